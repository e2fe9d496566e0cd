"""Redaction fails closed through the real server: when the redactor breaks, every way in
answers "retry later" (gRPC UNAVAILABLE with RetryInfo, HTTP 503 with Retry-After), nothing of
the request reaches the WAL, and the OpenTelemetry SDK exporters retry until it works again.

The one stand-in: the pipeline's Redactor has its `_redact` (the work inside its error guard)
replaced by one that raises, as an internal bug or a failed allocation would.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import orjson
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult

from aitrail.collector.serve import Collector
from aitrail.store.otlp_decode import request_to_json
from aitrail.store.query import Store

from ..store.redaction_samples import Fakes
from .wire import (
    EXPORT_LOGS,
    JSON,
    count_calls,
    good_request,
    grpc_export,
    http_post,
    sdk_spans,
    stored_spans,
)

GH = Fakes(21).github_pat()


def _always_fail(_n: int) -> None:
    raise MemoryError("scratch allocation failed")


def _fail_first(n: int) -> None:
    if n == 1:
        _always_fail(n)


def _wal(c: Collector) -> dict[str, bytes]:
    """Every file of the collector's WAL directory (segments, checkpoint, seen digests)."""
    root = c.opts.store / "_wal"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _retry_delay(st: status_pb2.Status) -> float:
    assert st.code == code_pb2.UNAVAILABLE and "redaction failed" in st.message
    (detail,) = st.details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9


def test_a_failing_redactor_answers_retry_later_everywhere_and_the_wal_is_unchanged(
        collector, monkeypatch):
    first, first_ids = good_request(2)
    assert grpc_export(collector.grpc_port, first.SerializeToString()).code == \
        grpc.StatusCode.OK
    before = _wal(collector)
    assert any(name.endswith(".wal") and data for name, data in before.items())

    calls = count_calls(monkeypatch, collector.pipeline.redactor, "_redact", _always_fail)
    req, _ = good_request(1, resource={"deploy.note": f"token {GH}"})
    logs = ExportLogsServiceRequest()
    logs.resource_logs.add().scope_logs.add().log_records.add().body.string_value = \
        f"git push with {GH}"

    g = grpc_export(collector.grpc_port, req.SerializeToString())
    assert g.code == grpc.StatusCode.UNAVAILABLE
    delay = _retry_delay(g.status_details())
    assert delay > 0 and g.retry_info() is not None
    g = grpc_export(collector.grpc_port, logs.SerializeToString(), method=EXPORT_LOGS)
    assert g.code == grpc.StatusCode.UNAVAILABLE and _retry_delay(g.status_details()) == delay

    for path, body, ctype in (
            ("/v1/traces", req.SerializeToString(), None),
            ("/v1/traces", request_to_json(req), JSON),
            ("/v1/logs", logs.SerializeToString(), None),
            ("/v1/logs", orjson.dumps(json_format.MessageToDict(logs)), JSON)):
        kwargs = {"content_type": ctype} if ctype else {}
        h = http_post(collector.http_port, body, path=path, **kwargs)
        assert h.status == 503, (path, ctype)
        assert int(h.headers["retry-after"]) >= 1
        st = (json_format.Parse(h.body, status_pb2.Status()) if ctype
              else status_pb2.Status.FromString(h.body))
        assert _retry_delay(st) == delay
        assert GH.encode() not in h.body

    assert calls[0] == 6  # every request reached the redactor, and went no further
    assert _wal(collector) == before  # byte for byte: not one record, not one digest
    assert set(stored_spans(collector)) == first_ids


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_exporters_retry_until_the_redactor_works_again(collector, monkeypatch, protocol):
    calls = count_calls(monkeypatch, collector.pipeline.redactor, "_redact", _fail_first)
    spans, ids = sdk_spans(1, attrs={"gen_ai.input.messages": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": f"my token is {GH}"}]}])})
    exporter = (GrpcSpans(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True,
                          timeout=10) if protocol == "grpc" else
                HttpSpans(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces",
                          timeout=10))
    try:
        # The collector asks for a 1 s delay; the exporter waits it, then sends again.
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert calls[0] == 2
    assert set(stored_spans(collector)) == ids
    with Store(collector.opts.store) as st:
        (row,) = st.sql("select input_messages, redactions from spans", limit=None).rows
    assert GH not in row["input_messages"] and "[REDACTED:github-pat:" in row["input_messages"]
    assert [e["rule"] for e in json.loads(row["redactions"])] == ["github-pat"]
    assert GH.encode() not in b"".join(p.read_bytes() for p in Path(
        collector.opts.store, "_wal").rglob("*") if p.is_file())
