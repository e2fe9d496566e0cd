"""Small OTLP/JSON traces for the findings rules, written to a file and ingested through the
real pipeline (Ingester: decode, redact, normalize, Parquet), and stores with declarations."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aitrail.store.declarations import DeclarationLog, parse_declaration, read_declaration
from aitrail.store.findings import attach_findings, findings
from aitrail.store.ingest import Ingester
from aitrail.store.query import Result, Store
from aitrail.store.redaction import RedactionPolicy

from ..conftest import ROOT

SAMPLES = ROOT / "sample_traces"
SAMPLE_FEATURES = {  # sample_traces/aitrail.toml
    "support-agent": "support-agent-suggested-replies",
    "coding-agent": "billing-coding-agent",
    "oncall-assistant": "oncall-assistant",
    "devhelper-bot": "devhelper-answers",
    "research-assistant": "research-assistant",
    "reply-drafter": "support-reply-drafts",
}
# The samples' incidents happen 4-21 November 2026: findings are judged the day after.
GOLDEN_NOW = datetime(2026, 11, 22, tzinfo=UTC)
BEFORE = datetime(2026, 11, 1, tzinfo=UTC)  # when the teams declared their features
T0 = 1_793_664_000 * 10**9  # 2026-11-03: synthetic traces, after BEFORE, before the nows


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [_value(x) for x in v]}}
    raise TypeError(v)


def _attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in d.items()]


@dataclass
class Traces:
    """Spans of made-up traces, by service; `span` returns (trace_id, span_id) in hex."""

    spans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def span(self, trace: str, key: str, name: str, at_s: float, attrs: dict[str, Any],
             service: str = "svc", error: str | None = None,
             events: list[tuple[float, str, dict[str, Any]]] | None = None,
             ) -> tuple[str, str]:
        tid = hashlib.sha256(trace.encode()).hexdigest()[:32]
        sid = hashlib.sha256(f"{trace}/{key}".encode()).hexdigest()[:16]
        start = T0 + int(at_s * 1e9)
        s: dict[str, Any] = {
            "traceId": tid, "spanId": sid, "name": name, "kind": 1,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 10**7),
            "attributes": _attrs(attrs),
            "status": {"code": 2, "message": error} if error else {}}
        if events:
            s["events"] = [{"timeUnixNano": str(start + int(t * 1e9)), "name": n,
                            "attributes": _attrs(a)} for t, n, a in events]
        self.spans.setdefault(service, []).append(s)
        return tid, sid

    def ingest(self, root: Path, redaction: RedactionPolicy | None = None) -> None:
        req = {"resourceSpans": [
            {"resource": {"attributes": _attrs({"service.name": svc})},
             "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}]}
            for svc, spans in self.spans.items()]}
        path = root.parent / f"{root.name}-traces.jsonl"
        path.write_text(json.dumps(req) + "\n")
        report = Ingester(root, "default", redaction=redaction).add_files([path])
        assert report.ok, report.errors + report.rejected


def declare(root: Path, yaml_text: str, effective: datetime | None = BEFORE) -> str:
    decl = parse_declaration(yaml_text, "test.yaml")
    return DeclarationLog(root).declare(decl, yaml_text, "test.yaml", effective)[0].version


def evaluate(root: Path, features: dict[str, str] | None = None,
             now: datetime = GOLDEN_NOW, **filters: Any) -> Result:
    with Store(root) as st:
        attach_findings(st, features, now)
        return findings(st, **filters)


def sample_store_with_declarations(sample_store: Path, into: Path) -> Path:
    """A copy of the sample store with every sample's ai_change.yaml declared."""
    shutil.copytree(sample_store, into)
    log = DeclarationLog(into)
    for path in sorted(SAMPLES.glob("*/ai_change.yaml")):
        decl, text = read_declaration(path)
        log.declare(decl, text, str(path), BEFORE)
    return into
