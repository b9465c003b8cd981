"""Where folds are trained: the one-fold loop (``fold``), the fold runner and its executors, the run directory
(``runs``), and ``batched/``, which trains many folds' copies of one model as one stacked model."""
