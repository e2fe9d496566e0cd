"""Reading a trace from the pages that hold it: the same rows as reading its row groups, for
traces inside a page, across pages and across row groups; row groups whose pages do not line
up, and sidecars without row starts, are read the old way."""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from aitrail.store import compact as compact_mod
from aitrail.store.compact import compact_store
from aitrail.store.ingest import Ingester
from aitrail.store.pages import page_map
from aitrail.store.query import Store
from aitrail.store.trace_index import MAGIC, IdSet, TraceReader, sidecar_path, write_sidecar

T0 = int(datetime(2026, 11, 20, 8, tzinfo=UTC).timestamp()) * 10**9
LATER = datetime(2026, 11, 25, tzinfo=UTC)


def _build(root: Path, seed: int = 3, traces: int = 60, long_text: bool = False
           ) -> list[bytes]:
    """One hour, two flushes, traces of 1 to 40 spans with some long and some missing text."""
    rng = random.Random(seed)
    tids = []
    for flush in range(2):
        spans = []
        for _ in range(traces // 2):
            tid = rng.randbytes(16)
            tids.append(tid)
            for i in range(rng.randint(1, 40)):
                attrs = [KeyValue(key="gen_ai.request.model",
                                  value=AnyValue(string_value=rng.choice(["a", "b", "c"])))]
                if rng.random() < 0.7:
                    long = long_text and rng.random() < 0.03
                    text = "word " * (600 if long else rng.randint(1, 50))
                    attrs.append(KeyValue(key="gen_ai.prompt",
                                          value=AnyValue(string_value=text)))
                start = T0 + rng.randrange(3600 * 10**9 - 10**6)
                spans.append(Span(trace_id=tid, span_id=rng.randbytes(8), name=f"s{i}",
                                  start_time_unix_nano=start, end_time_unix_nano=start + 999,
                                  attributes=attrs))
        res = Resource(attributes=[KeyValue(key="service.name",
                                            value=AnyValue(string_value="svc"))])
        ing = Ingester(root, "acme", writer_id=f"w{flush}")
        ing.add(ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource=res, scope_spans=[ScopeSpans(spans=spans)])]))
        ing.flush()
    return tids


@pytest.fixture()
def small_pages(monkeypatch):
    """Pages of 8 rows in row groups of 64, so small stores have many of both."""
    monkeypatch.setattr(compact_mod, "PAGE_ROWS", 8)
    monkeypatch.setattr(compact_mod, "COMPACT_ROW_GROUP", 64)


def _by_pages_and_by_row_groups(root: Path, tid: bytes) -> tuple[pa.Table, pa.Table]:
    files = [(f, IdSet(sidecar_path(f))) for f in root.glob("spans/*/*/*/*.parquet")]
    by_pages = TraceReader().read(files, tid)
    by_groups = TraceReader().read([(f, None) for f, _ in files], tid)
    return by_pages, by_groups


def test_a_compacted_trace_is_read_from_its_pages_with_the_same_rows(tmp_path: Path,
                                                                       small_pages) -> None:
    tids = _build(tmp_path)
    compact_store(tmp_path, now=LATER)
    [f] = tmp_path.glob("spans/*/*/*/*.parquet")
    ids = IdSet(sidecar_path(f))
    pm = ids.pages
    rows = pq.read_metadata(f).num_rows
    assert pm is not None and pm.rows_per_page == 8 and pq.read_metadata(f).num_row_groups > 3
    assert sum(pm.cell(k)[1] for k in range(pm.count)) == rows  # every row group lines up
    crossing = 0
    for tid in tids:
        first, end = ids.rows(tid)
        crossing += first // 64 != (end - 1) // 64
        by_pages, by_groups = _by_pages_and_by_row_groups(tmp_path, tid)
        assert by_pages.num_rows == end - first and by_pages.equals(by_groups)
        assert set(by_pages["trace_id"].to_pylist()) == {tid}
        some = ("trace_id", "name", "attributes")  # only these of the stored columns
        assert TraceReader().read([(f, ids)], tid, some).equals(
            by_groups.select([*some, "tenant", "date", "hour"]))
    assert crossing  # some traces span two row groups
    with Store(tmp_path) as st:
        assert [len(st.trace(t.hex()).rows) for t in tids] == \
               [ids.rows(t)[1] - ids.rows(t)[0] for t in tids]


def test_a_row_group_whose_pages_do_not_line_up_is_read_whole(tmp_path: Path, small_pages,
                                                                monkeypatch) -> None:
    # The writer checks a page's size after each batch of rows; with batches smaller than a
    # page, a page holding a long text is cut before its 8 rows, out of line.
    writer = pq.ParquetWriter
    monkeypatch.setattr(pq, "ParquetWriter", lambda *a, **kw: writer(
        *a, **kw, write_batch_size=3))
    monkeypatch.setattr(compact_mod, "COMPACT_PAGE_SIZE", 2000)
    tids = _build(tmp_path, long_text=True)
    compact_store(tmp_path, now=LATER)
    [f] = tmp_path.glob("spans/*/*/*/*.parquet")
    pm = IdSet(sidecar_path(f)).pages
    mapped = 0 if pm is None else sum(pm.cell(k)[1] for k in range(pm.count))
    assert 0 < mapped < pq.read_metadata(f).num_rows
    for tid in tids:
        by_pages, by_groups = _by_pages_and_by_row_groups(tmp_path, tid)
        assert by_pages.num_rows and by_pages.equals(by_groups)


def test_page_map_follows_the_offset_index(tmp_path: Path) -> None:
    t = pa.table({"a": pa.array(range(100), pa.int64()),
                  "b": pa.array([f"v{i % 7}" for i in range(100)])})
    path = tmp_path / "x.parquet"
    pq.write_table(t, path, row_group_size=40, max_rows_per_page=16, write_page_index=True,
                   use_dictionary=["b"])
    pm = page_map(path, 16)
    assert [c[:2] for c in pm.cells] == [(0, 16), (16, 16), (32, 8), (40, 16), (56, 16),
                                         (72, 8), (80, 16), (96, 4)]
    assert [c[2] for c in pm.cells] == [0, 0, 0, 1, 1, 1, 2, 2] and pm.columns == 2
    assert all(d[1] > 0 for d in pm.dicts[0][1:]) and pm.dicts[0][0] == (0, 0)
    # Pages of another size do not line up with the 16-row grid: nothing mapped.
    assert page_map(path, 8).cells == []
    # A long value passes the page size limit, yet pages keep their rows (it is checked per
    # batch, and batches end at page boundaries).
    big = pa.table({"a": pa.array(["x" * 5000] * 100)})
    pq.write_table(big, path, row_group_size=40, max_rows_per_page=16, write_page_index=True,
                   data_page_size=1024)
    assert sum(n for _, n, _ in page_map(path, 16).cells) == 100


def test_sidecar_without_row_starts_is_still_used(tmp_path: Path) -> None:
    tids = _build(tmp_path, traces=10)
    compact_store(tmp_path, now=LATER)
    [f] = tmp_path.glob("spans/*/*/*/*.parquet")
    ids = sorted(set(tids))
    side = sidecar_path(f)
    side.write_bytes(struct.pack("<8sQ", MAGIC, len(ids)) + b"".join(ids))  # the first format
    old = IdSet(side)
    assert old.rows(ids[0]) is None and old.pages is None and ids[0] in old
    with Store(tmp_path) as st:
        assert all(st.trace(t.hex()).rows for t in tids)
        assert st.index.files_for(tids[0]) == [f]


def test_unsorted_ids_get_a_sidecar_without_row_starts(tmp_path: Path) -> None:
    ids = [bytes([i]) * 16 for i in (3, 1, 2, 1)]
    side = write_sidecar(tmp_path / "x.parquet", pa.array(ids, pa.binary(16)))
    got = IdSet(side)
    assert side.read_bytes()[:8] == MAGIC and got.rows(ids[0]) is None
    assert [got[i] for i in range(len(got))] == sorted(set(ids))
    ordered = IdSet(write_sidecar(tmp_path / "y.parquet", pa.array(sorted(ids), pa.binary(16))))
    assert [ordered.rows(bytes([i]) * 16) for i in (1, 2, 3)] == [(0, 2), (2, 3), (3, 4)]


def test_a_truncated_sidecar_is_not_used(tmp_path: Path) -> None:
    tids = _build(tmp_path, traces=10)
    compact_store(tmp_path, now=LATER)
    [f] = tmp_path.glob("spans/*/*/*/*.parquet")
    side = sidecar_path(f)
    side.write_bytes(side.read_bytes()[:-5])
    with pytest.raises(ValueError):
        IdSet(side)
    with Store(tmp_path) as st:  # the file is then a candidate for every trace
        assert all(st.trace(t.hex()).rows for t in tids)
