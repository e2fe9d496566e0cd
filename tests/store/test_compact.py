"""Compaction and the trace index: same rows before and after, found without the hour,
never a half-swapped partition, late and uncommitted files kept, crash leftovers invisible."""

from __future__ import annotations

import os
import random
import threading
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from aitrail.cli import main
from aitrail.store import compact as compact_mod
from aitrail.store.compact import compact_store, plan
from aitrail.store.errors import NotFound
from aitrail.store.ingest import Ingester
from aitrail.store.pages import PAGE_ROWS
from aitrail.store.query import Store
from aitrail.store.schema import DICTIONARY_COLUMNS
from aitrail.store.trace_index import FENCE, IdSet, sidecar_path, write_sidecar

T0 = int(datetime(2026, 11, 20, 8, tzinfo=UTC).timestamp()) * 10**9
HOUR = 3600 * 10**9
LATER = datetime(2026, 11, 25, tzinfo=UTC)  # every hour of the store is closed by then


def _request(rng: random.Random, traces: int, hours: int) -> tuple[ExportTraceServiceRequest,
                                                                    list[bytes]]:
    spans, tids = [], []
    for _ in range(traces):
        tid = rng.randbytes(16)
        tids.append(tid)
        start = T0 + rng.randrange(hours * HOUR)
        root = rng.randbytes(8)
        for i in range(3):
            spans.append(Span(
                trace_id=tid, span_id=root if i == 0 else rng.randbytes(8),
                parent_span_id=b"" if i == 0 else root, name=f"step-{i}",
                start_time_unix_nano=start + i * 1000, end_time_unix_nano=start + i * 1000 + 500,
                attributes=[KeyValue(key="gen_ai.request.model",
                                     value=AnyValue(string_value=rng.choice(["a", "b"])))]))
    res = Resource(attributes=[KeyValue(key="service.name",
                                        value=AnyValue(string_value="svc"))])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=res, scope_spans=[ScopeSpans(spans=spans)])]), tids


def _build(root: Path, flushes: int = 4, traces: int = 30, hours: int = 3,
           seed: int = 7) -> list[bytes]:
    """A store whose hours each hold `flushes` files (one Ingester per flush)."""
    rng = random.Random(seed)
    tids = []
    for i in range(flushes):
        req, t = _request(rng, traces, hours)
        ing = Ingester(root, "acme", writer_id=f"w{i}")
        ing.add(req)
        ing.flush()
        tids += t
    return tids


def _rows(root: Path) -> list[tuple]:
    with Store(root) as st:
        return sorted(tuple(sorted((k, repr(v)) for k, v in r.items()))
                      for r in st.raw_rows())


def _parquet(root: Path) -> list[Path]:
    return sorted((root / "spans").glob("*/*/*/*.parquet"))


@pytest.mark.parametrize("range_rows", [100_000, 50])  # one sort; spilled in trace-id ranges
def test_compaction_keeps_every_row_and_leaves_one_indexed_file_per_hour(
        tmp_path: Path, monkeypatch, range_rows: int) -> None:
    monkeypatch.setattr(compact_mod, "RANGE_ROWS", range_rows)
    tids = _build(tmp_path)
    before = _rows(tmp_path)
    assert len(_parquet(tmp_path)) == 12  # 4 flushes x 3 hours
    report = compact_store(tmp_path, now=LATER)
    assert (report.partitions, report.files_in, report.files_out) == (3, 12, 3)
    assert report.spans == len(before) == 4 * 30 * 3
    files = _parquet(tmp_path)
    assert len(files) == 3 and all(f.name.startswith("compacted-") for f in files)
    assert all(sidecar_path(f).exists() for f in files)
    rg = pq.read_metadata(files[0]).row_group(0)
    codecs = {rg.column(i).path_in_schema: rg.column(i).compression
              for i in range(rg.num_columns)}
    assert {c for c, z in codecs.items() if z == "UNCOMPRESSED"} == set(DICTIONARY_COLUMNS)
    assert {z for c, z in codecs.items() if c not in DICTIONARY_COLUMNS} == {"ZSTD"}
    pages = IdSet(sidecar_path(files[0])).pages  # every row is in the page map
    assert pages.rows_per_page == PAGE_ROWS
    assert sum(pages.cell(k)[1] for k in range(pages.count)) == pq.read_metadata(files[0]).num_rows
    assert _rows(tmp_path) == before
    assert not (tmp_path / "_compact").exists() or not any((tmp_path / "_compact").iterdir())
    with Store(tmp_path) as st:  # sorted by trace id, as the trace index and stats need
        for f in files:
            ids = st.sql(f"select trace_id from read_parquet('{f}')", limit=None).rows
            assert [r["trace_id"] for r in ids] == sorted(r["trace_id"] for r in ids)
    with Store(tmp_path) as st:
        for tid in tids[::7]:
            assert len(st.trace(tid.hex()).rows) == 3
        assert st.index.files_for(tids[0]) and len(st.index.files_for(tids[0])) == 1
        with pytest.raises(NotFound):
            st.trace("ab" * 16)
    # Nothing left to do: a second run changes nothing.
    assert compact_store(tmp_path, now=LATER).partitions == 0


def test_open_hours_are_not_compacted(tmp_path: Path) -> None:
    _build(tmp_path, flushes=2, hours=2)
    # 09:00-10:00 ends at 10:00; with ten minutes' grace it is still open at 10:05.
    todo = plan(tmp_path, now=datetime(2026, 11, 20, 10, 5, tzinfo=UTC))
    assert [p.name for p, _ in todo] == ["hour=08"]
    assert compact_store(tmp_path, now=datetime(2026, 11, 20, 10, 5, tzinfo=UTC)).partitions == 1
    hours = {f.parent.name: [] for f in _parquet(tmp_path)}
    for f in _parquet(tmp_path):
        hours[f.parent.name].append(f.name)
    assert len(hours["hour=08"]) == 1 and len(hours["hour=09"]) == 2


def test_search_and_trace_answer_the_same_after_compaction(tmp_path: Path) -> None:
    tids = _build(tmp_path, flushes=3, traces=40, hours=4)
    with Store(tmp_path) as st:
        before = st.search(limit=25, model="a")
        whole = st.search(limit=10_000, model="a")
        traces = {t: st.trace(t.hex()).rows for t in tids[:20]}
    compact_store(tmp_path, now=LATER)
    with Store(tmp_path) as st:
        after = st.search(limit=25, model="a")
        assert after.rows == before.rows and after.truncated and before.truncated
        assert st.search(limit=10_000, model="a").rows == whole.rows
        assert {t: st.trace(t.hex()).rows for t in tids[:20]} == traces
    # The page is newest first and exactly the top of the whole ordering.
    assert [r["trace_id"] for r in after.rows] == [r["trace_id"] for r in whole.rows[:25]]
    assert not whole.truncated


def test_a_file_without_a_valid_sidecar_is_still_searched(tmp_path: Path) -> None:
    tids = _build(tmp_path, flushes=2, hours=1)
    files = _parquet(tmp_path)
    sidecar_path(files[0]).unlink()
    side = sidecar_path(files[1])
    side.write_bytes(side.read_bytes()[:-5])  # torn
    with Store(tmp_path) as st:
        for tid in tids:
            assert len(st.trace(tid.hex()).rows) == 3
    # Compaction rewrites them with a sidecar.
    assert compact_store(tmp_path, now=LATER).files_out == 1
    assert all(sidecar_path(f).exists() for f in _parquet(tmp_path))


def test_readers_never_see_a_half_swapped_partition(tmp_path: Path) -> None:
    tids = _build(tmp_path, flushes=3, traces=20, hours=6)
    total = len(_rows(tmp_path))
    stop = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []

    def compact() -> None:
        try:
            # One tenant-hour at a time, then again over the compacted files, so the
            # reader runs across many swaps.
            for _ in range(4):
                for part in sorted((tmp_path / "spans").glob("*/*/*")):
                    compact_mod.compact_partition(tmp_path, part, sorted(part.glob("*.parquet")))
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            stop.set()

    with Store(tmp_path) as st:
        worker = threading.Thread(target=compact)
        worker.start()
        i = 0
        while not stop.is_set() or i < 3:
            counts.append(st.sql("select count(*) as n from _spans").rows[0]["n"])
            assert len(st.trace(tids[i % len(tids)].hex()).rows) == 3
            i += 1
        worker.join()
    assert not errors, errors
    assert len(counts) >= 3 and set(counts) == {total}
    assert len(_parquet(tmp_path)) == 6


def test_a_file_published_during_compaction_survives(tmp_path: Path, monkeypatch) -> None:
    _build(tmp_path, flushes=2, hours=1)
    rng = random.Random(99)
    late_req, late_tids = _request(rng, 5, 1)
    real_merge = compact_mod.merge

    def merge_then_late_file(inputs, dest, **kw):
        rows = real_merge(inputs, dest, **kw)
        ing = Ingester(tmp_path, "acme", writer_id="late")  # a late span's flush
        ing.add(late_req)
        ing.flush()
        return rows

    monkeypatch.setattr(compact_mod, "merge", merge_then_late_file)
    compact_store(tmp_path, now=LATER)
    names = sorted(f.name.split("-")[0] for f in _parquet(tmp_path))
    assert names == ["compacted", "late"]
    with Store(tmp_path) as st:
        assert st.sql("select count(*) as n from _spans").rows[0]["n"] == (2 * 30 + 5) * 3
        assert len(st.trace(late_tids[0].hex()).rows) == 3


def test_uncommitted_collector_files_are_not_merged(tmp_path: Path) -> None:
    """A flush file newer than its writer's checkpoint may be deleted by recovery and
    rewritten from the WAL, so compaction must leave it alone."""
    rng = random.Random(3)
    for seq in (1, 2, 3):
        req, _ = _request(rng, 10, 1)
        ing = Ingester(tmp_path, "acme", writer_id=f"coll-f{seq:08d}")
        ing.add(req)
        ing.flush()
    # Named as the collector names them: <writer>-f<seq>-<n>.parquet
    assert _parquet(tmp_path)[0].name == "coll-f00000001-000001.parquet"
    wal = tmp_path / "_wal" / "coll"
    wal.mkdir(parents=True)
    (wal / "checkpoint.json").write_bytes(orjson.dumps({"flush_seq": 2, "segment": 0,
                                                         "offset": 0}))
    (_, inputs), = plan(tmp_path, now=LATER)
    assert sorted(p.name[:14] for p in inputs) == ["coll-f00000001", "coll-f00000002"]
    compact_store(tmp_path, now=LATER)
    names = sorted(f.name for f in _parquet(tmp_path))
    assert names[0].startswith("coll-f00000003") and names[1].startswith("compacted-")
    assert sidecar_path(_parquet(tmp_path)[0]).exists()  # moved along with its file


def test_leftovers_of_a_crashed_compaction_are_invisible_and_removed(tmp_path: Path) -> None:
    _build(tmp_path, flushes=2, hours=1)
    total = len(_rows(tmp_path))
    (part, inputs), = plan(tmp_path, now=LATER)
    crashed = tmp_path / "_compact" / "deadbeef" / part.name
    crashed.mkdir(parents=True)
    compact_mod.merge(inputs, crashed / "compacted-x.parquet")  # died before the swap
    assert len(_rows(tmp_path)) == total
    compact_store(tmp_path, now=LATER)
    assert not (tmp_path / "_compact" / "deadbeef").exists()
    assert len(_rows(tmp_path)) == total


def test_cli_compact_dry_run_then_for_real(tmp_path: Path, capsys) -> None:
    _build(tmp_path, flushes=2, hours=2)
    assert main(["--store", str(tmp_path), "compact", "--dry-run", "--grace", "0",
                 "--format", "json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["dry_run"] and out["partitions"] == 2 and out["files_in"] == 4
    assert len(_parquet(tmp_path)) == 4
    assert main(["--store", str(tmp_path), "compact", "--grace", "0"]) == 0
    assert "compacted 2 tenant-hours: 4 files" in capsys.readouterr().out
    assert len(_parquet(tmp_path)) == 2


def test_compaction_refuses_quietly_when_another_runs(tmp_path: Path) -> None:
    import fcntl

    _build(tmp_path, flushes=2, hours=1)
    (tmp_path / "_locks").mkdir(exist_ok=True)
    fd = os.open(tmp_path / "_locks" / "compact.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        report = compact_store(tmp_path, now=LATER)
    finally:
        os.close(fd)
    assert report.partitions == 0 and "another compaction" in report.skipped[0]
    assert len(_parquet(tmp_path)) == 2


def test_a_trace_crossing_into_the_previous_hour_is_placed_by_its_first_span(
        tmp_path: Path) -> None:
    """Hours are scanned newest first and the scan stops when the page is full; a trace
    that also matches in the hour before must still be ordered by its earliest span."""
    minute = 60 * 10**9
    h = T0 + 5 * HOUR

    def span(tid: bytes, start: int) -> Span:
        return Span(trace_id=tid, span_id=random.Random(start).randbytes(8), name="call",
                    start_time_unix_nano=start, end_time_unix_nano=start + 1000)

    a, b, c, x = (bytes([i]) * 16 for i in (1, 2, 3, 4))
    spans = [span(a, h + 10 * minute), span(b, h + 20 * minute), span(c, h + 30 * minute),
             span(x, h - HOUR + 50 * minute), span(x, h + 15 * minute)]
    ing = Ingester(tmp_path, "acme", writer_id="w")
    ing.add(ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        scope_spans=[ScopeSpans(spans=spans)])]))
    ing.flush()
    with Store(tmp_path) as st:
        page = st.search(limit=3)
        assert [r["trace_id"] for r in page.rows] == [c.hex(), b.hex(), a.hex()]
        assert page.truncated
        last = st.search(limit=4).rows[-1]
        assert (last["trace_id"], last["matching_spans"]) == (x.hex(), 2)


def test_log_records_are_compacted_too_including_ones_without_a_trace(
        tmp_path: Path, monkeypatch) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    from aitrail.store.log_records import LogBatch, append_logs_request
    from aitrail.store.writer import ParquetWriter

    monkeypatch.setattr(compact_mod, "RANGE_ROWS", 7)  # several trace-id ranges
    rng = random.Random(4)
    for w in range(3):
        records = [LogRecord(time_unix_nano=T0 + rng.randrange(HOUR),
                             trace_id=rng.randbytes(16) if i % 3 else b"",
                             span_id=rng.randbytes(8) if i % 3 else b"",
                             event_name="gen_ai.user.message",
                             body=AnyValue(string_value=f"record {w}-{i}"))
                   for i in range(12)]
        batch = LogBatch()
        append_logs_request(batch, ExportLogsServiceRequest(resource_logs=[ResourceLogs(
            scope_logs=[ScopeLogs(log_records=records)])]), "acme")
        ParquetWriter(tmp_path, f"w{w}").write_table(batch.to_table(), batch.tenants,
                                                     batch.hours, dataset="logs")
    def logs() -> list[tuple]:
        with Store(tmp_path) as st:
            return sorted(tuple(sorted((k, repr(v)) for k, v in r.items()))
                          for r in st.sql("select * from logs", limit=None).rows)

    before = logs()
    assert len(before) == 36 and len(list((tmp_path / "logs").glob("*/*/*/*.parquet"))) == 3
    report = compact_store(tmp_path, now=LATER)
    assert (report.log_records, report.files_out) == (36, 1)
    assert [f.name[:10] for f in (tmp_path / "logs").glob("*/*/*/*.parquet")] == ["compacted-"]
    assert logs() == before


def test_compaction_drops_exact_duplicates_and_keeps_same_ids_with_other_content(
        tmp_path: Path) -> None:
    """Two collector processes each stored the same retried request: after compaction every
    span is there once. A span that reuses ids with other content is evidence: kept."""
    rng = random.Random(21)
    req, tids = _request(rng, 10, 1)
    for w in ("p-0", "p-1"):  # the same request stored by two processes
        ing = Ingester(tmp_path, "acme", writer_id=w)
        ing.add(req)
        ing.flush()
    other = ExportTraceServiceRequest()
    other.CopyFrom(req)
    other.resource_spans[0].scope_spans[0].spans[0].name = "same ids, other content"
    del other.resource_spans[0].scope_spans[0].spans[1:]
    ing = Ingester(tmp_path, "acme", writer_id="p-2")
    ing.add(other)
    ing.flush()
    with Store(tmp_path) as st:
        assert st.sql("select count(*) as n from _spans").rows[0]["n"] == 2 * 30 + 1
    report = compact_store(tmp_path, now=LATER)
    assert report.spans == 30 + 1
    with Store(tmp_path) as st:
        rows = st.sql("select span_id, name from spans", limit=None).rows
        assert len(rows) == 31 and len({r["span_id"] for r in rows}) == 30
        assert "same ids, other content" in {r["name"] for r in rows}
        assert len(st.trace(tids[0].hex()).rows) == 4  # 3 spans + the variant


# Ids sharing their first bytes, so an id's tail and the next one's head can spell another id.
_IDS = hs.lists(hs.binary(min_size=2, max_size=2).map(lambda b: b * 8), max_size=3 * FENCE,
                unique=True)


@settings(max_examples=60, deadline=None)
@given(_IDS, hs.lists(hs.binary(min_size=0, max_size=17), max_size=20))
def test_a_sidecar_finds_exactly_its_ids(tmp_path_factory, ids: list[bytes],
                                         others: list[bytes]) -> None:
    ordered = sorted(ids)
    side = write_sidecar(tmp_path_factory.mktemp("tids") / "x.parquet",
                         pa.array(ordered, pa.binary(16)))
    got = IdSet(side)
    assert [got.index(t) for t in ordered] == list(range(len(ordered)))
    assert [got.rows(t) for t in ordered] == [(i, i + 1) for i in range(len(ordered))]
    # Not there: other values, and the 16 bytes across two neighbours (in the map, unaligned).
    spliced = [a[8:] + b[:8] for a, b in pairwise(ordered)]
    for t in others + spliced + [b"\x00" * 16, b"\xff" * 16]:
        assert (t in got) == (t in ids)
        assert got.rows(t) is None or t in ids


def test_a_lookup_sees_files_published_and_swapped_after_its_listing(tmp_path: Path) -> None:
    tids = _build(tmp_path, flushes=1, hours=1)
    long_ago = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    with Store(tmp_path) as st:
        for d in (tmp_path / "spans").glob("**/"):  # settled: listings are kept
            os.utime(d, (long_ago, long_ago))
        assert len(st.trace(tids[0].hex()).rows) == 3
        [part] = st.index.partitions()
        assert st.index.partitions()[0] is part  # nothing changed: not listed again
        req, late = _request(random.Random(8), 5, 1)
        ing = Ingester(tmp_path, "acme", writer_id="late")  # a flush into the same hour
        ing.add(req)
        ing.flush()
        assert len(st.trace(late[0].hex()).rows) == 3
        assert len(st.index.partitions()[0].files) == 2
        compact_store(tmp_path, now=LATER)  # swaps the hour's directory
        [f] = _parquet(tmp_path)
        assert st.index.files_for(late[0]) == st.index.files_for(tids[0]) == [f]
        assert len(st.trace(late[0].hex()).rows) == 3
