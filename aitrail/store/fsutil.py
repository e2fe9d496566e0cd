"""Small filesystem helpers shared by the WAL, the Parquet writer and compaction."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file under `path`, then the directories (a built index, before a swap)."""
    for sub, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            fd = os.open(os.path.join(sub, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(sub))


@contextmanager
def publish_lock(store_root: Path, exclusive: bool = False) -> Iterator[None]:
    """Writers publish files into partition directories under a shared lock; compaction
    swaps a whole directory under the exclusive one, so no file lands in a directory that is
    being swapped out. flock: per open file, so threads of one process exclude each other
    too, and a dead process releases its lock."""
    locks = Path(store_root) / "_locks"
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / "publish.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
