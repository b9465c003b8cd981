"""The batch face of the kit: run the notebooks with papermill (``run``), check their parameters (``params``),
the executed notebooks as files (``notebook_files``), sweeps over parameters (``sweep``) and the teaching
builds (``teach``)."""
