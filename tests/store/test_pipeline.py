"""The collector's sink in-process: accept -> WAL -> flush -> Parquet, and what a crash leaves."""

from __future__ import annotations

import itertools
import os
import signal
import struct
import time
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aitrail.store.errors import StoreError
from aitrail.store.pipeline import Busy, Limits, Pipeline, Unavailable
from aitrail.store.query import Store
from aitrail.store.wal import iter_records

HOUR_NS = 3600 * 10**9
_ids = itertools.count(1)


def request(spans: int = 3, start_ns: int | None = None) -> tuple[ExportTraceServiceRequest,
                                                                 list[str]]:
    """A request with fresh trace and span ids; returns it and its span ids in hex."""
    start = start_ns or time.time_ns()
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "pipeline-test"
    ss = rs.scope_spans.add()
    trace_id = struct.pack(">QQ", 1, next(_ids))
    ids = []
    for i in range(spans):
        sp = ss.spans.add()
        sp.trace_id, sp.span_id = trace_id, struct.pack(">Q", next(_ids))
        sp.name, sp.kind = f"step {i}", 1
        sp.start_time_unix_nano, sp.end_time_unix_nano = start + i, start + i + 1000
        ids.append(sp.span_id.hex())
    return req, ids


def pipeline(root: Path, **limits) -> Pipeline:
    p = Pipeline(root, "test", limits=Limits(flush_interval_s=3600, **limits))
    p.start()
    return p


def crash(p: Pipeline) -> None:
    """What SIGKILL leaves behind, without killing the test: the flusher stops without a
    final flush or checkpoint, the WAL bytes already written stay (the kernel holds them),
    and the writer lock goes with its file descriptor."""
    p._stopping = True
    p._wake.set()
    p._wake_compactor.set()
    p._flusher.join()
    if p._compactor is not None:
        p._compactor.join()
    p.wal._file.close()
    os.close(p._lock_fd)


def stored(root: Path) -> Counter:
    """How many times each span id is in the store, reading every file."""
    with Store(root) as st:
        return Counter(r["span_id"] for r in st.sql("select span_id from spans", limit=None).rows)


def flush_files(root: Path, seq: int) -> list[Path]:
    return sorted((root / "spans").glob(f"*/*/*/test-f{seq:08d}-*.parquet"))


def test_accepted_spans_are_in_the_store_after_a_flush(tmp_path):
    p = pipeline(tmp_path)
    try:
        sent = []
        for _ in range(3):
            req, ids = request()
            accepted = p.accept(req, "default")
            assert (accepted.spans, accepted.rejected, accepted.duplicates) == (3, 0, 0)
            sent += ids
        assert stored(tmp_path) == Counter()  # acknowledged, in the WAL, not yet in Parquet
        assert p.flush() == 9
        assert p.flush() == 0
    finally:
        p.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in sent})


def test_invalid_spans_are_rejected_and_the_rest_stored(tmp_path):
    req, ids = request(3)
    req.resource_spans[0].scope_spans[0].spans[1].span_id = bytes(8)
    p = pipeline(tmp_path)
    try:
        accepted = p.accept(req, "default")
    finally:
        p.stop()
    assert (accepted.spans, accepted.rejected) == (2, 1)
    assert "span_id must be 8 non-zero bytes" in accepted.message
    assert stored(tmp_path) == Counter({ids[0]: 1, ids[2]: 1})


def test_spans_acknowledged_before_a_crash_are_replayed_and_stored_once(tmp_path):
    a = pipeline(tmp_path)
    sent = []
    for i in range(4):
        req, ids = request()
        a.accept(req, "default")
        sent += ids
        if i == 1:
            assert a.flush() == 6  # a checkpoint in the middle: only what follows is replayed
    crash(a)
    assert stored(tmp_path) == Counter({i: 1 for i in sent[:6]})

    b = Pipeline(tmp_path, "test", limits=Limits(flush_interval_s=3600))
    assert b.start() == 2
    try:
        assert b.flush() == 6
    finally:
        b.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in sent})
    c = Pipeline(tmp_path, "test")
    assert c.start() == 0  # a clean stop leaves nothing to replay
    c.stop()


def test_files_of_an_unfinished_flush_are_deleted_and_their_spans_replayed_once(tmp_path):
    a = pipeline(tmp_path)
    first, ids1 = request()
    second, ids2 = request()
    a.accept(first, "default")
    a.flush()
    a.accept(second, "default")
    # The flush writes its Parquet files and then cannot write its checkpoint.
    blocker = a.wal_dir / "checkpoint.tmp"
    blocker.mkdir()
    with pytest.raises(OSError):
        a.flush()
    unfinished = flush_files(tmp_path, 2)
    assert unfinished
    crash(a)
    assert stored(tmp_path)[ids2[0]] == 1  # a reader sees the orphan until the restart
    blocker.rmdir()

    b = Pipeline(tmp_path, "test", limits=Limits(flush_interval_s=3600))
    assert b.start() == 1
    assert not any(f.exists() for f in unfinished)
    try:
        b.flush()
    finally:
        b.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in ids1 + ids2})


def test_a_flush_retried_after_a_failure_stores_each_span_once(tmp_path):
    p = pipeline(tmp_path)
    try:
        late, ids_late = request(start_ns=time.time_ns())
        p.accept(late, "default")
        blocker = p.wal_dir / "checkpoint.tmp"
        blocker.mkdir()
        with pytest.raises(OSError):
            p.flush()
        blocker.rmdir()
        # The retry carries more data, in an earlier hour: its partitions, and so its file
        # numbers, differ from the failed attempt's.
        early, ids_early = request(start_ns=time.time_ns() - 2 * HOUR_NS)
        p.accept(early, "default")
        assert p.flush() == 6
    finally:
        p.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in ids_late + ids_early})


def test_a_second_pipeline_with_the_same_writer_id_cannot_start(tmp_path):
    a = pipeline(tmp_path)
    try:
        with pytest.raises(StoreError, match="--writer-id"):
            Pipeline(tmp_path, "test").start()
        other = Pipeline(tmp_path, "other")
        other.start()  # another writer id is another WAL
        other.stop()
        req, ids = request()
        assert a.accept(req, "default").spans == 3  # the refused start did not disturb it
    finally:
        a.stop()
    b = Pipeline(tmp_path, "test")
    b.start()  # free again once the first has stopped
    b.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in ids})


def test_busy_when_unflushed_bytes_exceed_the_limit(tmp_path):
    p = pipeline(tmp_path, max_unflushed_bytes=100)
    try:
        first, ids1 = request()
        second, ids2 = request()
        p.accept(first, "default")
        with pytest.raises(Busy) as busy:
            p.accept(second, "default")
        assert busy.value.retry_after_s > 0
        assert len(list(iter_records(p.wal_dir))) == 1  # the refused request is not logged
        p.flush()
        assert p.accept(second, "default").spans == 3
    finally:
        p.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in ids1 + ids2})


def copy(req: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """A fresh decode, as each request arrives (accept drops duplicates from its argument)."""
    return ExportTraceServiceRequest.FromString(req.SerializeToString())


def test_duplicates_are_dropped_across_a_restart(tmp_path):
    a = pipeline(tmp_path)
    req, ids = request(3)
    assert a.accept(copy(req), "default").spans == 3
    again = a.accept(copy(req), "default")  # an exporter retry after a lost ack
    assert (again.spans, again.duplicates) == (0, 3)
    crash(a)

    b = Pipeline(tmp_path, "test", limits=Limits(flush_interval_s=3600))
    assert b.start() == 1
    try:
        again = b.accept(copy(req), "default")  # the replayed WAL refilled the digest window
        assert (again.spans, again.duplicates) == (0, 3)
        mixed, new_ids = request(2)
        mixed.resource_spans[0].scope_spans[0].spans.append(req.resource_spans[0]
                                                           .scope_spans[0].spans[0])
        got = b.accept(mixed, "default")
        assert (got.spans, got.duplicates) == (2, 1)
        b.flush()
    finally:
        b.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in ids + new_ids})


def test_a_retry_of_spans_flushed_before_a_restart_is_a_duplicate(tmp_path):
    """The digest window is kept beside the WAL: a flush writes the digests of what it
    stored, and a restart reads them back (the WAL itself was trimmed by the flush)."""
    a = pipeline(tmp_path)
    req, ids = request(3)
    assert a.accept(copy(req), "default").spans == 3
    a.flush()
    a.stop()

    b = Pipeline(tmp_path, "test", limits=Limits(flush_interval_s=3600))
    assert b.start() == 0  # nothing to replay: the WAL cannot refill the window
    try:
        again = b.accept(copy(req), "default")
        assert (again.spans, again.duplicates) == (0, 3)
    finally:
        b.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in ids})


def test_the_persisted_window_keeps_only_what_the_window_holds(tmp_path):
    p = pipeline(tmp_path, dedupe_window=10)
    try:
        for _ in range(6):  # 6 flushes of 3 spans: only the newest files covering 10 stay
            p.accept(request(3)[0], "default")
            p.flush()
        files = sorted((tmp_path / "_wal" / "test" / "seen").glob("*.bin"))
        assert [f.name for f in files] == [f"{n:08d}.bin" for n in (3, 4, 5, 6)]
        assert sum(f.stat().st_size for f in files) == 4 * 3 * 8
    finally:
        p.stop()


def test_the_window_forgets_the_oldest_spans_first(tmp_path):
    p = pipeline(tmp_path, dedupe_window=6)
    try:
        requests = [request(3) for _ in range(4)]  # 12 spans through a window of 6
        for req, _ in requests:
            assert p.accept(copy(req), "default").spans == 3
        assert len(p._seen) == 6
        newest = p.accept(copy(requests[-1][0]), "default")
        oldest = p.accept(copy(requests[0][0]), "default")
        assert (newest.spans, newest.duplicates) == (0, 3)
        assert (oldest.spans, oldest.duplicates) == (3, 0)  # forgotten: stored again
    finally:
        p.stop()


def test_a_failed_wal_makes_the_pipeline_unavailable_and_keeps_what_it_acknowledged(tmp_path):
    a = pipeline(tmp_path)
    req, ids = request()
    a.accept(req, "default")
    fd = a.wal._file.fileno()
    real = os.dup(fd)
    read_end, write_end = os.pipe()
    try:
        os.dup2(write_end, fd)  # fdatasync on a pipe fails with EINVAL
        with pytest.raises(Unavailable, match="fsync failed"):
            a.accept(request()[0], "default")
        os.dup2(real, fd)
        with pytest.raises(Unavailable, match="cannot store data"):
            a.accept(request()[0], "default")
        a.stop()  # no flush of a failed WAL; the acknowledged request waits in the log
    finally:
        for f in (real, read_end, write_end):
            os.close(f)
    assert stored(tmp_path) == Counter()
    b = Pipeline(tmp_path, "test")
    assert b.start() == 1
    b.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in ids})


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_conversion_helper_converts_rounds_and_stops_with_the_pipeline(tmp_path):
    p = pipeline(tmp_path, convert_in_helper=True)
    try:
        reqs = [request(4) for _ in range(3)]
        for req, _ in reqs:
            p.accept(copy(req), "default")
        assert p.flush() == 12
        pid = p._converter.pid
        assert pid is not None  # the round went through the helper
    finally:
        p.stop()
    assert _gone(pid)  # stop() ends it (it exits when its stdin closes)
    assert stored(tmp_path) == Counter({i: 1 for _, ids in reqs for i in ids})


def test_a_killed_helper_loses_nothing_and_is_replaced(tmp_path):
    p = pipeline(tmp_path, convert_in_helper=True)
    try:
        first, first_ids = request(3)
        p.accept(copy(first), "default")
        assert p.flush() == 3
        old = p._converter.pid
        os.kill(old, signal.SIGKILL)
        second, second_ids = request(3)
        p.accept(copy(second), "default")
        assert p.flush() == 3  # converted in the collector this round
        third, third_ids = request(3)
        p.accept(copy(third), "default")
        assert p.flush() == 3
        assert p._converter.pid not in (None, old)  # a new helper took over
    finally:
        p.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in first_ids + second_ids + third_ids})


def test_the_helper_converts_what_the_compiled_converter_cannot_read(tmp_path):
    """A bytes-valued attribute goes to the reference converter, in the helper."""
    p = pipeline(tmp_path, convert_in_helper=True)
    try:
        req, ids = request(2)
        sp = req.resource_spans[0].scope_spans[0].spans[0]
        sp.attributes.add(key="blob").value.bytes_value = b"\x00\x01"
        plain, plain_ids = request(2)
        p.accept(copy(req), "default")
        p.accept(copy(plain), "default")
        assert p.flush() == 4
    finally:
        p.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in ids + plain_ids})
    with Store(tmp_path) as st:
        rows = st.sql("select attributes from spans where attributes like '%blob%'").rows
    assert len(rows) == 1 and "$bytes" in rows[0]["attributes"]


def _own_flushes(p: Pipeline) -> Pipeline:
    """Stop the background flusher: a round a request (`flush_round_bytes=1`) would wake it
    on every accept, and the test drives every flush itself."""
    p._stopping = True
    p._wake.set()
    p._flusher.join()
    p._stopping = False
    return p


def test_every_round_a_stopped_helper_held_is_staged_again_here(tmp_path):
    """A helper that stops answering cannot stall the flusher: it is killed after the
    timeout, and every round it held is staged in the collector."""
    p = _own_flushes(pipeline(tmp_path, convert_in_helper=True, flush_round_bytes=1))
    try:
        first, first_ids = request(3)
        p.accept(copy(first), "default")
        assert p.flush() == 3
        stuck = p._converter.pid
        p._converter.timeout_s = 1.0
        os.kill(stuck, signal.SIGSTOP)
        reqs = [request(3) for _ in range(3)]
        for req, _ in reqs:
            p.accept(copy(req), "default")
        assert p.flush() == 9  # two rounds went to the stopped helper: both staged here
        assert _gone(stuck)
        assert p.stats["flushes"] == 4
    finally:
        p.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in first_ids + [i for _, ids in reqs
                                                                    for i in ids]})


def test_a_failed_flush_leaves_nothing_staged_and_its_retry_stores_each_span_once(tmp_path):
    p = _own_flushes(pipeline(tmp_path, convert_in_helper=True, flush_round_bytes=1))
    try:
        reqs = [request(3) for _ in range(3)]
        for req, _ in reqs:
            p.accept(copy(req), "default")
        blocker = p.wal_dir / "checkpoint.tmp"
        blocker.mkdir()  # the first round publishes, then cannot checkpoint
        with pytest.raises(OSError):
            p.flush()
        assert not list((p.wal_dir / "staging").iterdir())  # the next round's files too
        blocker.rmdir()
        assert p.flush() == 9
    finally:
        p.stop()
    assert stored(tmp_path) == Counter({i: 1 for _, ids in reqs for i in ids})


def test_a_helper_dying_between_rounds_loses_nothing_and_answers_no_later_round(tmp_path,
                                                                               monkeypatch):
    """Round 1 goes to helper A, which dies; round 2 cannot be sent (staged here); round 3
    goes to a new helper B. Round 1's answer never comes: rounds 1 and 3 are staged here,
    and B, which also has round 3, must not answer a round of the next flush with it."""
    p = _own_flushes(pipeline(tmp_path, convert_in_helper=True, flush_round_bytes=1))
    real = type(p._converter).submit
    calls = []

    def submit(self, job):
        calls.append(self.pid)
        if len(calls) == 2:  # helper A dies between rounds 1 and 2
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        return real(self, job)

    monkeypatch.setattr(type(p._converter), "submit", submit)
    try:
        reqs = [request(3) for _ in range(3)]
        for req, _ in reqs:
            p.accept(copy(req), "default")
        assert p.flush() == 9
        assert calls[0] is None and calls[1] is not None and calls[2] is None  # A, then B
        later, later_ids = request(3)
        p.accept(copy(later), "default")
        assert p.flush() == 3
    finally:
        p.stop()
    assert stored(tmp_path) == Counter({i: 1 for i in later_ids + [i for _, ids in reqs
                                                                    for i in ids]})
