"""The run report (``run_dir/index.html``) and the side-by-side comparison of runs (``compare.csv/.html/.png``).

`write_report` turns whatever a run directory holds into one self-contained HTML page (every image embedded
as a base64 data URI, so the file can be mailed or opened from disk without a server):

- the headline: pooled UF1 / UAR / accuracy with their bootstrap intervals, model, protocol, dataset, counts;
- per-dataset and per-class tables; the variants' comparison (table and figure, with intervals);
- the confusion matrix and the per-subject scores; the explanation figures and tables of 04_explain (the
  attention of each module with what its scores mean, when 04_explain wrote ``explain_attention_modules.csv``);
- the data summary (clips, subjects, counts, ``data_problems.csv`` when the builders wrote one);
- the configuration (``config.json``, the pipeline parameters) and the environment (``env.json``);
- links to every executed notebook (HTML and ipynb).

The pages are rendered by the jinja2 templates of ``merkit/report/templates/`` (package data), autoescaped.

Contract: a missing artefact makes its section disappear, never an error; a section that fails to draw is
replaced by a one-line note naming the error (and a warning), so a report is always written. The page is
written atomically, and only into a run directory (one holding ``config.json`` or ``pipeline_params.yaml``)
over no ``index.html`` that the report did not write; otherwise `ReportError`, and nothing is written.

`compare_runs` reads several run directories (a sweep's, or any) and writes one table and one figure of them
side by side; a directory without ``metrics.json``, or with a corrupt one, is reported (naming the file and the
key) and skipped.

The names below load on first use (``lazy_loader``, listed in ``__init__.pyi``), so that the pipeline can read
its headline numbers and notebook records without loading the figures.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
