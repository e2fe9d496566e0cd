"""Ingest benchmark: aitrail's pipeline against a plain "floor", on the same load, same run.

The load (see ../shared/reference/performance.md): 6-span AI traces (agent root, retrieval
with 4 documents, chat, tool call, policy decision, change) with varied English-like text and
random ids, several services, spread over 24 h, as OTLP ExportTraceServiceRequest protobufs of
~512 spans each, serialized to bytes before anything is timed.

Timed, best of --repeat each (floor and aitrail runs interleaved so machine noise hits both):

- FLOOR: FromString, one flat Arrow table of the generic columns (attributes as orjson JSON
  of a plain dict, no normalization), one zstd Parquet file with pyarrow defaults.
- AITRAIL (1 process): FromString, then aitrail.store.ingest.Ingester.add() per request and
  .flush() (full normalization + Hive-partitioned, sorted, fsync'd Parquet): the path the
  collector uses.
- AITRAIL-jN: the payload bytes through Ingester(jobs=N).add_payload(), as `aitrail ingest
  --jobs N` does: decode and normalization in N worker processes (start-up included), one
  sort and write in this process.

Targets: aitrail/floor throughput >= 0.7 (checked on the jN run; the one-process ratio is
printed next to it); aitrail Parquet <= 450 bytes/span. The machine is shared and noisy:
read the ratios, not the absolute rates, and rerun before believing a change of a few %.

    .venv/bin/python benchmarks/ingest_file.py [--spans 100000] [--seed 1] [--repeat 3]
        [--jobs N] [--json] [--columns] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import itertools
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from aitrail.store.ingest import Ingester

TARGET_RATIO = 0.7
TARGET_BYTES_PER_SPAN = 450
SPANS_PER_REQUEST = 512
DAY_START_NS = int(datetime(2025, 6, 2, tzinfo=UTC).timestamp()) * 1_000_000_000
DAY_NS = 86_400 * 1_000_000_000
MS = 1_000_000

# -- the load ---------------------------------------------------------------------------------

# Common English words first (they get the highest Zipf weight), then domain vocabulary.
_WORDS = """
the of and to a in is that for it as was with be by on not he this are or his from at which
but have an they you were her all she there would their we him been has when who will more
no if out so said what up its about into than them can only other new some could time these
two may then do first any my now such like our over man me even most made after also did
many before must through back years where much your way well down should because each just
those people how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us great old year
off come since against go came right used take three states himself few house use during
without again place around however home small found thought went say part once general high
upon school every don't does got united left number course war until always away something
fact though water less public put think almost hand enough far took head yet government
system better set told nothing night end why called didn't eyes find going look asked later
knew point next program city business give group toward young days let room president side
social given present several order national possible rather second face per among form
important often things looking early white case john become large big need four within felt
along children saw best church ever least power development light thing seemed family
interest want members mind country area others done turn although open problem help sense
certain means whole policy customer request order account invoice refund ticket migration
table column index database query latency deploy release rollback service cluster node pod
container config secret token credential key user session agent model prompt response review
approve deny reason change commit branch merge pull repository pipeline build test failure
error timeout retry queue worker schedule incident alert page oncall runbook metric dashboard
log trace span audit compliance risk approval escalation budget quota limit region zone
payment charge subscription plan upgrade downgrade cancel renewal contract vendor supplier
shipment delivery warehouse inventory stock price discount coupon tax report summary draft
email message reply thread channel document search result score source citation evidence
shell command kubectl terraform ansible helm chart manifest namespace replica scale restart
memory cpu disk network packet firewall rule permission role access grant revoke rotate
backup restore snapshot volume storage bucket object upload download file path directory
""".split()  # noqa: SIM905
_IDENT_PREFIXES = ("INC", "PR", "TKT", "ORD", "CUST", "DEP", "JIRA", "SR", "CHG")

# Service -> (agent names, tools, data sources, change targets).
_SERVICES = {
    "support-agent": (("support-triage", "refund-helper"),
                      ("lookup_order", "issue_refund", "send_email"),
                      ("kb-articles", "past-tickets"), ("zendesk/macros", "billing-api")),
    "code-review-agent": (("pr-reviewer", "migration-planner"),
                          ("read_file", "run_tests", "post_comment"),
                          ("repo-index", "design-docs"), ("acme/payments", "acme/web")),
    "oncall-assistant": (("incident-commander", "runbook-runner"),
                         ("kubectl", "query_metrics", "page_human"),
                         ("runbooks", "postmortems"), ("prod-eu/checkout", "prod-us/search")),
    "billing-bot": (("invoice-agent",), ("create_invoice", "apply_credit", "lookup_customer"),
                    ("contracts", "pricing-sheets"), ("stripe/plans", "erp/ledger")),
    "search-assistant": (("research-agent", "answer-bot"), ("web_search", "fetch_url"),
                         ("wiki", "product-catalog"), ("search/synonyms", "search/ranking")),
    "release-agent": (("release-manager",), ("trigger_pipeline", "promote_build", "tag_repo"),
                      ("changelogs", "release-notes"), ("acme/api", "helm/gateway")),
}
_MODELS = (
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514"),
    ("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022"),
    ("aws.bedrock", "amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0"),
    ("gcp.vertex_ai", "gemini-2.5-pro", "gemini-2.5-pro-001"),
)
_VERDICTS = (("allow", "proceed"), ("allow", "proceed"), ("allow", "proceed"),
             ("allow", "proceed"), ("allow", "redact"), ("deny", "block"),
             ("review", "escalate"))
_CHANGE_KINDS = (("pull_request", "open"), ("pull_request", "merge"), ("deploy", "apply"),
                 ("config", "update"), ("command", "run"), ("ticket", "comment"))


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(
            values=[AnyValue(string_value=x) for x in value])))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _attrs(d: dict[str, Any]) -> list[KeyValue]:
    return [_kv(k, v) for k, v in d.items()]


def _dumps(v: Any) -> str:
    return orjson.dumps(v).decode()


class LoadGen:
    """Deterministic AI-trace load: same seed and size, same bytes."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        # Zipf-like weights: a few words are very common, most are rare (like real text).
        self.cum = list(itertools.accumulate(1.0 / (i + 1) ** 0.9 for i in range(len(_WORDS))))

    # text ------------------------------------------------------------------------------------
    def sentence(self) -> str:
        rng = self.rng
        words = rng.choices(_WORDS, cum_weights=self.cum, k=rng.randint(5, 17))
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words)),
                         f"{rng.choice(_IDENT_PREFIXES)}-{rng.randint(100, 99999)}")
        if rng.random() < 0.1:
            words.insert(rng.randrange(len(words)), f"{rng.randint(1, 5000)}")
        s = " ".join(words)
        return s[0].upper() + s[1:] + rng.choice("....?!,;:")[0]

    def text(self, size: int) -> str:
        target = int(size * self.rng.uniform(0.6, 1.4))
        parts, n = [], 0
        while n < target:
            s = self.sentence()
            parts.append(s)
            n += len(s) + 1
        return " ".join(parts)

    def tid(self) -> bytes:
        return (self.rng.getrandbits(128) | 1).to_bytes(16, "big")

    def sid(self) -> bytes:
        return (self.rng.getrandbits(64) | 1).to_bytes(8, "big")

    def hexid(self, n: int) -> str:
        return self.rng.getrandbits(n * 4).to_bytes(n // 2, "big").hex()

    # spans -----------------------------------------------------------------------------------
    def trace(self, service: str, start: int) -> list[Span]:
        rng = self.rng
        agents, tools, sources, targets = _SERVICES[service]
        trace_id, root_id = self.tid(), self.sid()
        agent = rng.choice(agents)
        user, session = f"user-{rng.randint(1, 5000)}", f"sess-{self.hexid(12)}"
        provider, model, rmodel = rng.choice(_MODELS)
        t = start + rng.randint(1, 20) * MS
        spans: list[Span] = []

        def span(name: str, kind: int, t0: int, dur: int, attrs: dict[str, Any],
                 parent: bytes = root_id, status: Status | None = None,
                 events: list[Span.Event] | None = None) -> int:
            spans.append(Span(trace_id=trace_id, span_id=self.sid(), parent_span_id=parent,
                              name=name, kind=kind, start_time_unix_nano=t0,
                              end_time_unix_nano=t0 + dur, attributes=_attrs(attrs),
                              status=status, events=events or None, flags=0x100))
            return t0 + dur

        # retrieval with 4 documents
        source = rng.choice(sources)
        docs = [{"id": f"{source}/{self.hexid(10)}", "score": round(rng.uniform(0.4, 0.98), 4),
                 "content": self.text(640)} for _ in range(4)]
        t = span(f"retrieval {source}", Span.SPAN_KIND_CLIENT, t, rng.randint(20, 400) * MS, {
            "gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": source,
            "gen_ai.retrieval.query.text": self.text(90),
            "gen_ai.retrieval.documents": _dumps(docs),
        })
        # chat
        tool = rng.choice(tools)
        call_id = f"call_{self.hexid(24)}"
        inp = [{"role": "system", "parts": [{"type": "text", "content": self.text(560)}]},
               {"role": "user", "parts": [{"type": "text", "content": self.text(950)}]}]
        out = [{"role": "assistant", "parts": [
            {"type": "text", "content": self.text(640)},
            {"type": "tool_call", "id": call_id, "name": tool,
             "arguments": {"query": self.text(60), "limit": rng.randint(1, 50)}}],
            "finish_reason": "tool_call"}]
        in_tok, out_tok = rng.randint(300, 4000), rng.randint(50, 900)
        t = span(f"chat {model}", Span.SPAN_KIND_CLIENT, t, rng.randint(400, 6000) * MS, {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
            "gen_ai.request.model": model, "gen_ai.response.model": rmodel,
            "gen_ai.request.temperature": round(rng.choice((0.0, 0.2, 0.7, 1.0)), 1),
            "gen_ai.request.max_tokens": rng.choice((1024, 2048, 4096)),
            "gen_ai.response.id": f"resp_{self.hexid(24)}",
            "gen_ai.response.finish_reasons": ["tool_call"],
            "gen_ai.usage.input_tokens": in_tok, "gen_ai.usage.output_tokens": out_tok,
            "gen_ai.input.messages": _dumps(inp), "gen_ai.output.messages": _dumps(out),
        })
        # tool call (2% fail with an exception event)
        failed = rng.random() < 0.02
        status = Status(code=Status.STATUS_CODE_ERROR, message="tool failed") if failed else None
        events = [Span.Event(time_unix_nano=t + 5 * MS, name="exception", attributes=_attrs({
            "exception.type": "TimeoutError", "exception.message": self.text(80)}))
        ] if failed else None
        tool_attrs = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
            "gen_ai.tool.type": "function", "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.call.arguments": _dumps({"query": self.text(60),
                                                  "limit": rng.randint(1, 50)}),
            "gen_ai.tool.call.result": _dumps({"status": "ok", "items": [
                self.text(60) for _ in range(rng.randint(1, 3))]}),
        }
        if failed:
            tool_attrs["error.type"] = "TimeoutError"
        t = span(f"execute_tool {tool}", Span.SPAN_KIND_INTERNAL, t,
                 rng.randint(5, 800) * MS, tool_attrs, status=status, events=events)
        # policy decision
        verdict, action = rng.choice(_VERDICTS)
        policy = f"{service}.{rng.choice(('tool-use', 'data-access', 'change-control'))}"
        t = span(f"aitrail.policy {policy}", Span.SPAN_KIND_INTERNAL, t,
                 rng.randint(1, 30) * MS, {
                     "aitrail.policy.id": policy,
                     "aitrail.policy.version": f"v{rng.randint(1, 12)}",
                     "aitrail.policy.verdict": verdict, "aitrail.policy.action": action,
                     "aitrail.policy.reason": self.text(90),
                 })
        # change
        kind, caction = rng.choice(_CHANGE_KINDS)
        target = rng.choice(targets)
        t = span(f"aitrail.change {kind}", Span.SPAN_KIND_INTERNAL, t,
                 rng.randint(10, 900) * MS, {
                     "aitrail.change.id": f"{kind}:{target}#{rng.randint(1, 99999)}",
                     "aitrail.change.kind": kind, "aitrail.change.action": caction,
                     "aitrail.change.target": target,
                 })
        # agent root, covering its children
        root = Span(trace_id=trace_id, span_id=root_id, name=f"invoke_agent {agent}",
                    kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=start,
                    end_time_unix_nano=t + rng.randint(1, 20) * MS, flags=0x100,
                    attributes=_attrs({
                        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent,
                        "gen_ai.agent.id": f"agt_{self.hexid(16)}",
                        "gen_ai.conversation.id": session, "enduser.id": user,
                        "gen_ai.provider.name": provider,
                    }))
        return [root, *spans]


def _resource(service: str, i: int) -> Resource:
    return Resource(attributes=_attrs({
        "service.name": service, "service.version": f"1.{i + 3}.{i * 7 % 10}",
        "service.instance.id": f"{service}-{i:02d}-7f9c", "deployment.environment.name": "prod",
        "host.name": f"ip-10-0-{i}-{17 + i}.ec2.internal", "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python", "telemetry.sdk.version": "1.36.0",
    }))


def make_load(n_spans: int, seed: int, span_ns: int = DAY_NS) -> list[bytes]:
    """Serialized ExportTraceServiceRequests, each from one service (one SDK process), with
    trace starts spread over `span_ns` (a day for file replays; an hour is live traffic)."""
    gen = LoadGen(seed)
    services = list(_SERVICES)
    resources = {s: _resource(s, i) for i, s in enumerate(services)}
    scope = InstrumentationScope(name="opentelemetry.instrumentation.genai", version="0.7.0")
    buffers: dict[str, list[Span]] = defaultdict(list)
    out: list[bytes] = []

    def emit(service: str) -> None:
        req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource=resources[service],
            scope_spans=[ScopeSpans(scope=scope, spans=buffers.pop(service))])])
        out.append(req.SerializeToString())

    n_traces = max(1, -(-n_spans // 6))
    step = span_ns // n_traces
    for i in range(n_traces):
        service = gen.rng.choice(services)
        start = DAY_START_NS + i * step + gen.rng.randrange(step)
        buf = buffers[service]
        buf.extend(gen.trace(service, start))
        if len(buf) >= SPANS_PER_REQUEST - 5:
            emit(service)
    for service in list(buffers):
        emit(service)
    return out


# -- floor: generic columns only, the plain way ------------------------------------------------

FLOOR_SCHEMA = pa.schema([
    ("trace_id", pa.binary(16)), ("span_id", pa.binary(8)), ("parent_span_id", pa.binary(8)),
    ("trace_state", pa.string()), ("flags", pa.uint32()), ("name", pa.string()),
    ("kind", pa.int8()), ("start_time_unix_nano", pa.uint64()),
    ("end_time_unix_nano", pa.uint64()), ("status_code", pa.int8()),
    ("status_message", pa.string()), ("service_name", pa.string()),
    ("resource_attributes", pa.string()), ("scope_name", pa.string()),
    ("scope_version", pa.string()), ("attributes", pa.string()), ("events", pa.string()),
    ("links", pa.string()),
])


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which) if which else None


def _plain(kvs: Any) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        if which == "string_value":
            out[kv.key] = v.string_value
        elif which == "int_value":
            out[kv.key] = v.int_value
        else:
            out[kv.key] = _value(v)
    return out


def run_floor(payloads: list[bytes], root: Path) -> int:
    dumps = orjson.dumps
    cols: dict[str, list[Any]] = {name: [] for name in FLOOR_SCHEMA.names}
    (c_tid, c_sid, c_pid, c_ts, c_flags, c_name, c_kind, c_start, c_end, c_sc, c_sm, c_svc,
     c_res, c_scn, c_scv, c_attr, c_ev, c_ln) = cols.values()
    for payload in payloads:
        req = ExportTraceServiceRequest.FromString(payload)
        for rs in req.resource_spans:
            res = _plain(rs.resource.attributes)
            res_json = dumps(res).decode()
            service = res.get("service.name")
            for ss in rs.scope_spans:
                scn, scv = ss.scope.name or None, ss.scope.version or None
                for sp in ss.spans:
                    c_tid.append(sp.trace_id)
                    c_sid.append(sp.span_id)
                    c_pid.append(sp.parent_span_id or None)
                    c_ts.append(sp.trace_state or None)
                    c_flags.append(sp.flags)
                    c_name.append(sp.name)
                    c_kind.append(sp.kind)
                    c_start.append(sp.start_time_unix_nano)
                    c_end.append(sp.end_time_unix_nano)
                    c_sc.append(sp.status.code)
                    c_sm.append(sp.status.message or None)
                    c_svc.append(service)
                    c_res.append(res_json)
                    c_scn.append(scn)
                    c_scv.append(scv)
                    c_attr.append(dumps(_plain(sp.attributes)).decode())
                    c_ev.append(dumps([
                        {"time_unix_nano": e.time_unix_nano, "name": e.name,
                         "attributes": _plain(e.attributes)} for e in sp.events
                    ]).decode() if sp.events else None)
                    c_ln.append(dumps([
                        {"trace_id": ln.trace_id.hex(), "span_id": ln.span_id.hex(),
                         "attributes": _plain(ln.attributes)} for ln in sp.links
                    ]).decode() if sp.links else None)
    table = pa.table(cols, schema=FLOOR_SCHEMA)
    pq.write_table(table, root / "spans.parquet", compression="zstd")
    return table.num_rows


def run_aitrail(payloads: list[bytes], root: Path) -> int:
    """One process: the collector's path (decoded requests handed to the store)."""
    ing = Ingester(root, "bench")
    for payload in payloads:
        ing.add(ExportTraceServiceRequest.FromString(payload))
    ing.flush()
    if ing.report.rejected:
        raise SystemExit(f"aitrail rejected spans: {ing.report.rejected[:3]}")
    return ing.report.spans


def run_aitrail_jobs(jobs: int) -> Callable[[list[bytes], Path], int]:
    """`aitrail ingest --jobs N`'s path: payload bytes decoded and normalized in N worker
    processes (pool start-up included in the time), written by this one."""
    def run(payloads: list[bytes], root: Path) -> int:
        ing = Ingester(root, "bench", jobs=jobs)
        for payload in payloads:
            ing.add_payload("bench", "protobuf", payload)
        ing.close()
        if ing.report.rejected or ing.report.errors:
            raise SystemExit(f"aitrail rejected input: {ing.report.rejected[:3]}")
        return ing.report.spans
    return run


# -- measuring ---------------------------------------------------------------------------------


def _parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if p.is_file())


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def column_sizes(root: Path) -> dict[str, int]:
    """Compressed bytes per column, summed over every row group of every file."""
    sizes: dict[str, int] = defaultdict(int)
    for path in _parquet_files(root):
        md = pq.ParquetFile(path).metadata
        for rg in range(md.num_row_groups):
            g = md.row_group(rg)
            for c in range(g.num_columns):
                col = g.column(c)
                sizes[col.path_in_schema] += col.total_compressed_size
    return dict(sizes)


def timed(fn: Any, payloads: list[bytes], tmp_base: str | None) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="aitrail-bench-", dir=tmp_base))
    try:
        gc.collect()
        t0 = time.perf_counter()
        spans = fn(payloads, root)
        secs = time.perf_counter() - t0
        return {"seconds": secs, "spans": spans, "disk_bytes": _disk_bytes(root),
                "files": len(_parquet_files(root)), "columns": column_sizes(root)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def profile_aitrail(payloads: list[bytes], tmp_base: str | None, top: int = 30) -> str:
    root = Path(tempfile.mkdtemp(prefix="aitrail-prof-", dir=tmp_base))
    try:
        prof = cProfile.Profile()
        prof.runcall(run_aitrail, payloads, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=100_000, help="approximate span count")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is kept")
    ap.add_argument("--json", action="store_true", help="print a JSON summary instead")
    ap.add_argument("--columns", action="store_true",
                    help="also print compressed bytes/span per Parquet column")
    ap.add_argument("--profile", action="store_true",
                    help="also run aitrail once under cProfile and print the top functions")
    ap.add_argument("--tmpdir", default=None, help="where the temporary stores go")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="worker processes for the parallel run (default: cores); the target "
                    "ratio is checked on it, the one-process ratio is printed next to it")
    args = ap.parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    t0 = time.perf_counter()
    payloads = make_load(args.spans, args.seed)
    gen_secs = time.perf_counter() - t0
    n_spans = 6 * max(1, -(-args.spans // 6))
    pb_bytes = sum(map(len, payloads))
    log(f"load: {n_spans:,} spans in {len(payloads)} requests, {pb_bytes / 1e6:.1f} MB "
        f"protobuf ({pb_bytes / n_spans:,.0f} B/span), generated in {gen_secs:.1f}s")

    # Parse-only, for reference (the first step of both pipelines).
    t0 = time.perf_counter()
    for p in payloads:
        ExportTraceServiceRequest.FromString(p)
    parse_secs = time.perf_counter() - t0

    par = f"aitrail-j{args.jobs}"
    pipelines = [("floor", run_floor), ("aitrail", run_aitrail),
                 (par, run_aitrail_jobs(args.jobs))]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in pipelines}
    for i in range(args.repeat):
        for name, fn in pipelines:
            r = timed(fn, payloads, args.tmpdir)
            if r["spans"] != n_spans:
                raise SystemExit(f"{name} wrote {r['spans']} spans, expected {n_spans}")
            runs[name].append(r)
            log(f"  run {i + 1}/{args.repeat} {name:8s} {r['seconds']:6.2f}s "
                f"{n_spans / r['seconds']:>9,.0f} spans/s")
    best = {name: min(rs, key=lambda r: r["seconds"]) for name, rs in runs.items()}

    floor, ait = best["floor"], best["aitrail"]
    rate = {k: n_spans / v["seconds"] for k, v in best.items()}
    bps = {k: v["disk_bytes"] / n_spans for k, v in best.items()}
    ratio1 = rate["aitrail"] / rate["floor"]
    ratio = rate[par] / rate["floor"]
    ratio_ok = ratio >= TARGET_RATIO
    bytes_ok = max(bps["aitrail"], bps[par]) <= TARGET_BYTES_PER_SPAN
    summary = {
        "spans": n_spans, "requests": len(payloads), "seed": args.seed, "repeat": args.repeat,
        "load_protobuf_bytes_per_span": pb_bytes / n_spans,
        "parse_only_spans_per_s": n_spans / parse_secs,
        "floor": {"spans_per_s": rate["floor"], "seconds": floor["seconds"],
                  "disk_bytes_per_span": bps["floor"], "files": floor["files"]},
        "aitrail": {"spans_per_s": rate["aitrail"], "seconds": ait["seconds"],
                    "disk_bytes_per_span": bps["aitrail"], "files": ait["files"]},
        par: {"spans_per_s": rate[par], "seconds": best[par]["seconds"],
              "disk_bytes_per_span": bps[par], "files": best[par]["files"]},
        "ratio": ratio, "ratio_one_process": ratio1, "jobs": args.jobs,
        "targets": {"ratio_min": TARGET_RATIO, "aitrail_bytes_per_span_max": TARGET_BYTES_PER_SPAN},
        "pass": {"ratio": ratio_ok, "bytes_per_span": bytes_ok},
    }
    if args.columns:
        summary["columns_bytes_per_span"] = {
            k: {c: s / n_spans for c, s in sorted(v["columns"].items(), key=lambda x: -x[1])}
            for k, v in best.items()}

    if args.json:
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    else:
        mark = {True: "PASS", False: "MISS"}
        print()
        print(f"{'':10s} {'spans/s':>10s} {'best s':>8s} {'disk B/span':>12s} {'files':>6s}")
        print(f"{'parse only':10s} {n_spans / parse_secs:>10,.0f} {parse_secs:>8.3f} "
              f"{'':>12s} {'':>6s}")
        for k in ("floor", "aitrail", par):
            print(f"{k:10s} {rate[k]:>10,.0f} {best[k]['seconds']:>8.2f} {bps[k]:>12,.0f} "
                  f"{best[k]['files']:>6d}")
        print()
        print(f"load protobuf            {pb_bytes / n_spans:>8,.0f} B/span")
        print(f"aitrail/floor, 1 process {ratio1:>8.2f}   (the collector's in-process path)")
        print(f"aitrail/floor, {args.jobs} workers {ratio:>8.2f}   target >= {TARGET_RATIO}   "
              f"{mark[ratio_ok]}   (aitrail ingest --jobs {args.jobs}; the floor uses 1 core)")
        print(f"aitrail on disk          {max(bps['aitrail'], bps[par]):>8,.0f} B/span   "
              f"target <= "
              f"{TARGET_BYTES_PER_SPAN}   {mark[bytes_ok]}")
        if args.columns:
            print()
            cols = sorted(set(floor["columns"]) | set(ait["columns"]),
                          key=lambda c: -max(ait["columns"].get(c, 0),
                                             floor["columns"].get(c, 0)))
            print(f"{'column (compressed B/span)':32s} {'floor':>8s} {'aitrail':>8s}")
            for c in cols:
                f_, a_ = floor["columns"].get(c), ait["columns"].get(c)
                if max(f_ or 0, a_ or 0) / n_spans < 0.5:
                    continue
                print(f"{c:32s} {'' if f_ is None else f'{f_ / n_spans:8.1f}':>8s} "
                      f"{'' if a_ is None else f'{a_ / n_spans:8.1f}':>8s}")
    if args.profile:
        log(profile_aitrail(payloads, args.tmpdir))
    return 0 if ratio_ok and bytes_ok else 1


if __name__ == "__main__":
    sys.exit(main())
