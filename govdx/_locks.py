"""Advisory file locks (POSIX ``flock``) that serialise work on one home."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def home_lock(home: Path, name: str, *, on_wait=None) -> Iterator[None]:
    """Hold the exclusive lock ``<home>/locks/<name>.lock`` for the duration of a block.

    Args:
        home: the GOVDX_HOME folder.
        name: lock name (e.g. ``ingest``).
        on_wait: called once (no arguments) if another process holds the lock, before waiting.

    The lock is released when the block ends or the process dies (the kernel drops it).
    """
    folder = Path(home) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
