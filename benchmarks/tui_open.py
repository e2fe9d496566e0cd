"""TUI benchmark: first paint, a search page, free-text search and a 50,000-span trace open,
through the real app (headless, Textual's Pilot) on a generated store.

The store is written as benchmarks/query.py writes it (flushes of `--flush-spans`), plus one
trace of `--big-trace` spans (an agent loop: 50 turns with many tool calls each).
"First paint" is from starting the app to the first page of search results on screen;
"trace open" from opening the trace screen to its waterfall on screen. The baseline in the same
run is DuckDB counting every row of the store. Targets (issue 4, at 10M spans): first paint
<= 1 s, a 1,000-row filtered page <= 100 ms, free text <= 500 ms, 50k-span trace open <= 2 s.

    .venv/bin/python benchmarks/tui_open.py [--spans 200000] [--store DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query import build

from aitrail.store.ingest import Ingester
from aitrail.store.query import Store
from aitrail.tui.app import make_app
from aitrail.tui.search import SearchScreen
from aitrail.tui.trace import TraceScreen
from aitrail.tui.widgets import WaterfallView

BIG_TRACE = "b1" * 16
T0 = 1_794_700_800_000_000_000  # 2026-11-15T00:00:00Z


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def big_trace(n: int) -> ExportTraceServiceRequest:
    """One trace: a root, 50 agent turns, the rest tool calls under the turns."""
    tid = bytes.fromhex(BIG_TRACE)
    spans = [Span(trace_id=tid, span_id=(1).to_bytes(8, "big"), name="invoke_agent big",
                  start_time_unix_nano=T0, end_time_unix_nano=T0 + n * 1_000_000,
                  attributes=[_kv("gen_ai.operation.name", "invoke_agent")])]
    per_turn = (n - 51) // 50
    sid = 2
    for turn in range(50):
        turn_id = sid.to_bytes(8, "big")
        start = T0 + turn * per_turn * 1_000_000
        spans.append(Span(trace_id=tid, span_id=turn_id, parent_span_id=spans[0].span_id,
                          name=f"turn {turn}", start_time_unix_nano=start,
                          end_time_unix_nano=start + per_turn * 1_000_000))
        sid += 1
        for k in range(per_turn):
            s = start + k * 1_000_000
            spans.append(Span(trace_id=tid, span_id=sid.to_bytes(8, "big"),
                              parent_span_id=turn_id, name="execute_tool grep",
                              start_time_unix_nano=s, end_time_unix_nano=s + 900_000,
                              attributes=[_kv("gen_ai.operation.name", "execute_tool"),
                                          _kv("gen_ai.tool.name", "grep")]))
            sid += 1
    resource = Resource(attributes=[_kv("service.name", "big-agent")])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(spans=spans)])])


def ms(samples: list[float]) -> str:
    return (f"median {statistics.median(samples) * 1000:8.1f} ms   "
            f"max {max(samples) * 1000:8.1f} ms")


async def first_paint(root: Path) -> tuple[float, float]:
    """(first frame: the search screen up; first results on it), from app start."""
    started = time.perf_counter()
    app = make_app(root, user="bench")
    async with app.run_test(size=(120, 40)) as pilot:
        while not isinstance(app.screen, SearchScreen):
            await pilot.pause(0.005)
        # The first frame is when the screen has been painted once (waiting for the app to
        # be idle would also wait for the search worker, which is "first results").
        painted: list[float] = []
        app.screen.call_after_refresh(lambda: painted.append(time.perf_counter()))
        while not painted:
            await asyncio.sleep(0.002)
        frame = painted[0] - started
        while not app.screen.rows:
            await pilot.pause(0.005)
        await pilot.pause()
        return frame, time.perf_counter() - started


async def trace_open(root: Path) -> tuple[float, int]:
    app = make_app(root, user="bench")
    async with app.run_test(size=(120, 40)) as pilot:
        # as a responder would: the first results (and facets) are in before a trace opens
        while not app._changes_requested:
            await pilot.pause(0.01)
        await app.workers.wait_for_complete()
        started = time.perf_counter()
        app.open(TraceScreen(BIG_TRACE))
        view = None
        while view is None or not view.shown:
            await pilot.pause(0.005)
            views = app.screen.query(WaterfallView)
            view = views.first() if views else None
        await pilot.pause()
        return time.perf_counter() - started, len(view.nodes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--flush-spans", type=int, default=50_000)
    ap.add_argument("--big-trace", type=int, default=50_000)
    ap.add_argument("--store", type=Path, help="reuse or keep the store here")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    tmp = None
    root = args.store
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="aitrail-tuibench-")
        root = Path(tmp.name)
    if not any(root.glob("spans/*/*/*/*.parquet")):
        t0 = time.perf_counter()
        n = build(root, args.spans, args.flush_spans, args.seed)
        ing = Ingester(root, "bench", writer_id="bigtrace")
        ing.add(big_trace(args.big_trace))
        ing.flush()
        print(f"built {n + ing.report.spans:,} spans in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
    with Store(root) as st:
        t0 = time.perf_counter()
        total = st.sql("select count(*) as n from spans").rows[0]["n"]
        scan = time.perf_counter() - t0
        pages, texts = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            page = st.search(limit=1000, service="support-agent", verdict="allow")
            pages.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            st.search(limit=50, text="refund")
            texts.append(time.perf_counter() - t0)
    paints = [asyncio.run(first_paint(root)) for _ in range(args.repeat)]
    opens = [asyncio.run(trace_open(root)) for _ in range(args.repeat)]
    print(f"store: {total:,} spans")
    print(f"baseline: count(*) over the store      {scan * 1000:8.1f} ms")
    print(f"first frame (app start -> search up)   {ms([p[0] for p in paints])}")
    print(f"first results (app start -> page 1)    {ms([p[1] for p in paints])}")
    print(f"filtered page, 1,000 traces (API)      {ms(pages)}   ({len(page.rows)} rows)")
    print(f"free-text search, 50 traces (API)      {ms(texts)}")
    print(f"trace open, {opens[0][1]:,} spans              {ms([o[0] for o in opens])}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
