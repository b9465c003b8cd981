"""merkit: a Jupyter-first reproducible research kit for facial micro-expression recognition.

The library holds the models and data code; the notebooks in ``notebooks/`` call it.
See README.md for the two commands and the tour, docs/architecture.md for the data flow.
"""

__version__ = "0.1.0"
