"""Shared test settings: tiny sizes, one thread (the CI machine has two cores and is shared)."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test (and every notebook kernel a test starts, which inherits the environment) shares one cache
    under pytest's tmp folder, never the checkout's runs/cache or the user's $MERKIT_CACHE."""
    os.environ["MERKIT_CACHE"] = str(tmp_path_factory.mktemp("merkit_cache"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files that hold a ``slow`` test first, in their collected order: with several workers (``make test``) the
    longest runs start at once instead of at the end, where one of them alone would set the suite's time."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order within each group is kept
