"""Run a block as an ordinary user. The tests run as root in CI, and root reads and writes anything whatever the
modes say; there the block runs with the effective user ``nobody`` (``os.seteuid``), which the kernel holds to the
modes. A machine that allows neither skips with a message.

Python's own files may lie in root's home, which ``nobody`` cannot read: import what the block needs before it."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import pytest

NOBODY = 65534


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as an ordinary user: as is when not root, else with effective user ``nobody``."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.seteuid(NOBODY)
    except OSError as error:
        pytest.skip(f"running as root and cannot switch to user nobody ({error}): root reads and writes anything")
    try:
        yield
    finally:
        os.seteuid(0)
