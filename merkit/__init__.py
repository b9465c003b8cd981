"""merkit: a Jupyter-first reproducible research kit for facial micro-expression recognition.

The public face: ``import merkit`` offers what a notebook user touches, listed (and grouped) in ``__init__.pyi``:

- the run's configuration: ``RunConfig`` and its sections, ``PreprocessConfig``, ``SynthMEConfig``, ``FlowConfig``;
- the data: ``prepare_data``, ``generate_synthme``, ``write_release``, ``read_sample``, ``optical_flow``;
- the folds: ``make_splits``, ``loso_splits``, ``megc2019_splits``, ``lodo_splits``, ``group_kfold_splits``;
- training: ``run_protocol``, ``run_fold``; the models: ``create_model``, ``list_models``, ``load_model``,
  ``save_model``, ``predict_clip``;
- the explanations: ``attribute`` with one options object per method, ``explain_store``, ``explain_regions``;
- the scores and summaries: ``pooled_scores``, ``fold_mean_scores``, ``per_subject_table``, ``confusion_matrix``,
  ``bootstrap_ci``, ``summarise``, ``published_results``;
- the files a notebook writes (``atomic_write_csv``, ``atomic_write_json``) and the report (``write_report``).

Beside the face, a notebook imports from four documented subpackages: the figures in ``merkit.viz``, the explanation
toolbox in full in ``merkit.explain``, the report's pieces in ``merkit.report`` and the exercise helpers in
``merkit.pipeline.teach``. Every name loads on first use (``lazy_loader``), so ``import merkit`` stays
fast and loads neither torch nor numpy nor pandas. See README.md for the two commands and the tour,
docs/architecture.md for the data flow.
"""

import lazy_loader

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
