"""The real OpenTelemetry SDK exporters, unchanged, against a real collector."""

from __future__ import annotations

import json

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from aitrail.store.query import Store


def make_spans(service: str, change: str) -> list:
    """Finished SDK spans of a small agent run (never exported by a processor)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("invoke_agent fixer") as root:
        root.set_attributes({"gen_ai.operation.name": "invoke_agent", "aitrail.change.id": change})
        with tracer.start_as_current_span("chat gpt-4.1") as chat:
            chat.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4.1", "aitrail.change.id": change,
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "fix it"}]}])})
    provider.shutdown()
    return list(mem.get_finished_spans())


def stored(collector, change: str) -> list[dict]:
    collector.pipeline.flush()
    with Store(collector.opts.store) as st:
        return st.sql(f"select name, ai_kind, tenant, input_messages from spans "
                      f"where change_id = '{change}' order by name").rows


def test_grpc_exporter_spans_are_acknowledged_and_stored(collector):
    exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True)
    assert exporter.export(make_spans("svc-grpc", "chg-g")) == SpanExportResult.SUCCESS
    exporter.shutdown()
    rows = stored(collector, "chg-g")
    assert [r["name"] for r in rows] == ["chat gpt-4.1", "invoke_agent fixer"]
    assert rows[0]["ai_kind"] == "llm" and rows[0]["tenant"] == "default"
    assert json.loads(rows[0]["input_messages"])[0]["parts"][0]["content"] == "fix it"


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_http_exporter_spans_are_acknowledged_and_stored(collector, compression):
    exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces",
                                compression=compression)
    change = f"chg-h-{compression.value}"
    assert exporter.export(make_spans("svc-http", change)) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert [r["ai_kind"] for r in stored(collector, change)] == ["llm", "agent"]


def test_grpc_exporter_with_gzip_compression(collector):
    from grpc import Compression as GrpcCompression

    exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True,
                                compression=GrpcCompression.Gzip)
    assert exporter.export(make_spans("svc", "chg-gz")) == SpanExportResult.SUCCESS
    exporter.shutdown()
    assert len(stored(collector, "chg-gz")) == 2


def test_a_retried_export_is_stored_once(collector):
    spans = make_spans("svc", "chg-dup")
    exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert exporter.export(spans) == SpanExportResult.SUCCESS  # the ack was "lost"
    exporter.shutdown()
    assert len(stored(collector, "chg-dup")) == 2
    assert collector.pipeline.stats["duplicate_spans"] == 2


def test_standard_exporter_environment_variables_work_unchanged(tmp_path, monkeypatch):
    """OTEL_EXPORTER_OTLP_ENDPOINT / _HEADERS / _COMPRESSION, read by the SDK itself."""
    from aitrail.collector.auth import Authenticator, hash_token

    from .conftest import start_collector

    c = start_collector(tmp_path / "s", auth=Authenticator({hash_token("tok-env"): "acme"}))
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{c.grpc_port}")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20tok-env")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        exporter = GrpcSpanExporter()  # everything from the environment
        assert exporter.export(make_spans("svc-env", "chg-env")) == SpanExportResult.SUCCESS
        exporter.shutdown()
        rows = stored(c, "chg-env")
        assert [r["tenant"] for r in rows] == ["acme", "acme"]
    finally:
        c.stop(grace_s=1)
