"""A real `aitrail serve` killed under load and restarted, again and again: its store still
verifies clean (no false alarm from an interrupted flush, publish or log append), and again
after compacting what it wrote."""

from __future__ import annotations

from aitrail.store.compact import compact_store
from aitrail.store.integrity.verify import verify_store

from .crash_harness import soak, writer_ids

TRIALS = 6
SEED = 6151


def test_a_store_written_through_kills_and_restarts_verifies_clean(tmp_path):
    store = tmp_path / "store"
    result = soak(store, trials=TRIALS, seed=SEED, log=tmp_path / "serve.log")
    assert any(t.signal == "KILL" for t in result.trials) and result.acked > 100
    report = verify_store(store)
    assert report.ok, [f.to_dict() for f in report.problems]
    assert report.rows == result.stored  # every stored span is under a checked file entry
    for writer in writer_ids("crash"):  # each collector process signed its own log
        assert (store / "_integrity" / writer / "checkpoint").exists()
    # The harness's spans start in the last 4 hours: the older ones are closed with no grace.
    compacted = compact_store(store, grace_s=0)
    assert compacted.files_out and not compacted.skipped
    after = verify_store(store)
    assert after.ok, [f.to_dict() for f in after.problems]
    assert after.rows == result.stored
