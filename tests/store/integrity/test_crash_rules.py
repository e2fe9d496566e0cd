"""The crash rules of docs/integrity.md: whatever a crash interrupts (a flush, a publish, a
log append, a compaction's swap), `aitrail verify` raises no problem, before and after the
writer's recovery."""

from __future__ import annotations

import os
import random
from collections import Counter

import pytest

from aitrail.store import compact as compact_mod
from aitrail.store import writer as writer_mod
from aitrail.store.compact import compact_store
from aitrail.store.ingest import Ingester
from aitrail.store.integrity.verify import verify_store
from aitrail.store.pipeline import Limits, Pipeline

from ..test_pipeline import crash, flush_files, pipeline, request, stored
from .conftest import LATER, build
from .conftest import request as random_request


def _clean(root) -> list[str]:
    report = verify_store(root)
    assert report.ok, [f.to_dict() for f in report.problems]
    return sorted(f.cls for f in report.notes)


def test_an_unfinished_flush_is_retired_at_restart_and_verifies_clean(tmp_path):
    a = pipeline(tmp_path)
    first, ids1 = request()
    second, ids2 = request()
    a.accept(first, "default")
    a.flush()
    a.accept(second, "default")
    blocker = a.wal_dir / "checkpoint.tmp"
    blocker.mkdir()  # the flush publishes its files, then cannot checkpoint
    with pytest.raises(OSError):
        a.flush()
    unfinished = flush_files(tmp_path, 2)
    assert unfinished
    crash(a)
    assert _clean(tmp_path) == []  # logged and intact, only not checkpointed yet
    blocker.rmdir()
    b = Pipeline(tmp_path, "test", limits=Limits(flush_interval_s=3600))
    b.start()  # retires and deletes the unfinished flush's files, replays the WAL
    assert _clean(tmp_path) == []
    try:
        b.flush()
    finally:
        b.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in ids1 + ids2})
    assert _clean(tmp_path) == []
    log = (tmp_path / "_integrity" / "test" / "log").read_text()
    assert '"reason":"unfinished flush"' in log


def _crash_at_the_parquet_rename(monkeypatch) -> None:
    """The writer is killed after a file's log entry, before its rename."""
    real = os.replace

    def crash_on_parquet(src, dst):
        if str(dst).endswith(".parquet"):
            raise KeyboardInterrupt("killed between the log entry and the rename")
        return real(src, dst)

    monkeypatch.setattr(writer_mod.os, "replace", crash_on_parquet)


def test_a_crash_between_the_log_entry_and_the_rename_is_a_note(tmp_path, monkeypatch):
    build(tmp_path, flushes=1, hours=1, seed=21)
    _crash_at_the_parquet_rename(monkeypatch)
    ing = Ingester(tmp_path, "acme", writer_id="cut")
    ing.add(random_request(random.Random(5), 3, 1))
    with pytest.raises(KeyboardInterrupt):
        ing.flush()
    monkeypatch.undo()
    assert _clean(tmp_path) == ["publish_interrupted"]
    (tmp := next(tmp_path.glob("spans/*/*/*/.cut-*.parquet.tmp"))).unlink()
    report = verify_store(tmp_path)  # without its bytes anywhere, the file is lost
    assert report.classes() == {"deleted"} and tmp.name[1:-4] in report.problems[0].obj


def test_a_compaction_killed_before_its_swap_is_voided_by_the_next(tmp_path, monkeypatch):
    build(tmp_path, flushes=2, hours=1, seed=31)
    rows = len(stored(tmp_path))

    def killed(a, b):
        raise KeyboardInterrupt("killed before the swap")

    monkeypatch.setattr(compact_mod, "_exchange", killed)
    # As after SIGKILL: nothing runs after the swap fails, so nothing logs the void.
    monkeypatch.setattr(compact_mod.integrity, "void_interrupted_replacement",
                        lambda root, entry=None: None)
    with pytest.raises(KeyboardInterrupt):
        compact_store(tmp_path, now=LATER)
    monkeypatch.undo()
    assert _clean(tmp_path) == ["compaction_interrupted"]
    report = compact_store(tmp_path, now=LATER)  # voids it, then compacts for real
    assert report.files_out == 1 and not report.skipped
    assert _clean(tmp_path) == []
    assert len(stored(tmp_path)) == rows
    log = (tmp_path / "_integrity" / "compact" / "log").read_text()
    assert '"kind":"void"' in log


def test_a_collector_killed_between_the_log_entry_and_the_rename_is_a_note(tmp_path,
                                                                           monkeypatch):
    """The collector stages a round's files in its own directory, then publishes them."""
    a = pipeline(tmp_path)
    req, ids = request()
    a.accept(req, "default")
    _crash_at_the_parquet_rename(monkeypatch)
    monkeypatch.setattr(a, "_abandon", lambda rounds: None)  # SIGKILL runs no clean-up
    with pytest.raises(KeyboardInterrupt):
        a.flush()
    monkeypatch.undo()
    assert list((a.wal_dir / "staging").glob(".test-f00000001-*.parquet.tmp"))
    assert _clean(tmp_path) == ["publish_interrupted"]
    crash(a)
    b = Pipeline(tmp_path, "test", limits=Limits(flush_interval_s=3600))
    b.start()  # retires the logged file, clears the staging directory, replays the WAL
    assert not list((b.wal_dir / "staging").iterdir())
    try:
        b.flush()
    finally:
        b.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in ids})
    assert _clean(tmp_path) == []
