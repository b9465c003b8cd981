"""Shared test settings: tiny sizes, one thread (the CI machine has two cores and is shared)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
# Every notebook kernel and subprocess a test starts inherits one thread too: two pytest workers on two cores,
# each starting a kernel with a thread per core, would oversubscribe the cores and spin-wait.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test (and every notebook kernel a test starts, which inherits the environment) shares one cache
    under pytest's tmp folder, never the checkout's runs/cache or the user's $MERKIT_CACHE."""
    os.environ["MERKIT_CACHE"] = str(tmp_path_factory.mktemp("merkit_cache"))
