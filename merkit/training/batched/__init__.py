"""Fold-batched training: K folds' copies of one model trained as one stacked model (``stack``), the per-fold
batches (``data``), and STSTNet's wide and fused steps (``wide``, ``fused``)."""
