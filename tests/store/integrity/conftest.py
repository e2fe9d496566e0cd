"""Small stores built through the real write path (Ingester, compaction), copied per test."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from aitrail.store.compact import compact_store
from aitrail.store.ingest import Ingester
from aitrail.store.retention.apply import apply_retention
from aitrail.store.retention.holds import add_hold
from aitrail.store.retention.policy import RetentionPolicy

T0 = int(datetime(2026, 11, 20, 8, tzinfo=UTC).timestamp()) * 10**9
HOUR = 3600 * 10**9
LATER = datetime(2026, 11, 25, tzinfo=UTC)


def request(rng: random.Random, traces: int, hours: int,
            repeat: list[Span] | None = None) -> ExportTraceServiceRequest:
    spans = list(repeat or [])
    for _ in range(traces):
        tid, root = rng.randbytes(16), rng.randbytes(8)
        start = T0 + rng.randrange(hours * HOUR)
        for i in range(rng.randint(1, 4)):
            spans.append(Span(
                trace_id=tid, span_id=root if i == 0 else rng.randbytes(8),
                parent_span_id=b"" if i == 0 else root, name=f"step-{i}",
                start_time_unix_nano=start + i, end_time_unix_nano=start + i + 500,
                attributes=[KeyValue(key="gen_ai.request.model",
                                     value=AnyValue(string_value=rng.choice("ab")))]))
    res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="s"))])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=res, scope_spans=[ScopeSpans(spans=spans)])])


def build(root: Path, flushes: int = 3, traces: int = 4, hours: int = 2, seed: int = 1,
          duplicates: bool = False) -> Path:
    """A store of `flushes` ingest runs (one file per run and hour); with `duplicates`, each
    run repeats a span of the run before (an exporter retry stored twice)."""
    rng = random.Random(seed)
    last: list[Span] = []
    for i in range(flushes):
        req = request(rng, traces, hours, repeat=last[:1] if duplicates else None)
        last = list(req.resource_spans[0].scope_spans[0].spans)
        ing = Ingester(root, "acme", writer_id=f"w{seed}x{i}")
        ing.add(req)
        report = ing.close()
        assert report.ok and report.spans
    return root


@pytest.fixture(scope="session")
def base_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Read-only originals: copy one (`copy_store`) before changing anything."""
    out = {}
    out["plain"] = build(tmp_path_factory.mktemp("plain"), flushes=3, hours=3, seed=3)
    out["other"] = build(tmp_path_factory.mktemp("other"), flushes=1, hours=1, seed=9)
    compacted = build(tmp_path_factory.mktemp("compacted"), flushes=3, hours=2, seed=5,
                      duplicates=True)
    out["uncompacted"] = tmp_path_factory.mktemp("uncompacted") / "s"
    shutil.copytree(compacted, out["uncompacted"], symlinks=True)
    report = compact_store(compacted, now=LATER, grace_s=0)
    assert report.files_out and not report.skipped
    out["compacted"] = compacted
    # Retention applied over a copy of "plain", one trace held: tombstones, a hold, a policy.
    retired = copy_store(out["plain"], tmp_path_factory.mktemp("retired") / "s")
    first = sorted(retired.glob("spans/*/*/*/*.parquet"))[0]
    tid = pq.read_table(first, columns=["trace_id"]).column(0)[0].as_py()
    add_hold(retired, traces=[tid.hex()], reason="fixture")
    report = apply_retention(retired, RetentionPolicy(days=7), now=LATER + timedelta(days=30))
    assert report.retired and report.held
    out["retired"] = retired
    return out


def copy_store(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest
