"""Shared test settings: tiny sizes, one thread (the CI machine has two cores and is shared)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
