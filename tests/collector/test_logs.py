"""GenAI content sent as OTLP log records (OTel GenAI <= 1.36 events, and the >= 1.37
`gen_ai.client.inference.operation.details` record) joins its span's audit record, whichever
arrives first; every log record is also kept in the `logs` view."""

from __future__ import annotations

import json

import grpc
import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from aitrail.store.query import Store


def _providers(collector, protocol: str):
    resource = Resource.create({"service.name": "reply-drafter"})
    if protocol == "grpc":
        logs = GrpcLogs(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True)
    else:
        logs = HttpLogs(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/logs")
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    tp = TracerProvider(resource=resource)
    # Spans are exported last: the content arrives before its span.
    spans = GrpcSpans(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True)
    return tp, lp, spans


def _row(collector, name: str) -> dict:
    collector.pipeline.flush()
    with Store(collector.opts.store) as st:
        (row,) = st.sql("select ai_kind, input_messages, output_messages, system_instructions "
                        f"from spans where name = '{name}'").rows
        logs = st.sql("select event_name, trace_id, span_id from logs order by time").rows
    return {**row, "logs": logs}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_per_message_events_fill_the_span_they_belong_to(collector, protocol):
    tp, lp, span_exporter = _providers(collector, protocol)
    tracer, logger = tp.get_tracer("acme"), lp.get_logger("acme")
    with tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                             "gen_ai.request.model": "gpt-4o"})
        logger.emit(event_name="gen_ai.system.message",
                    body={"content": "You draft support replies."})
        logger.emit(event_name="gen_ai.user.message", body={"content": "Where is my refund?"})
        logger.emit(event_name="gen_ai.choice", body={
            "index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "It was sent on Monday."}})
    lp.shutdown()
    span_exporter.export([span])  # ended spans are ReadableSpans
    span_exporter.shutdown()
    row = _row(collector, "chat gpt-4o")
    assert row["ai_kind"] == "llm"
    assert [(m["role"], m["parts"][0]["content"]) for m in json.loads(row["input_messages"])] == [
        ("system", "You draft support replies."), ("user", "Where is my refund?")]
    (out,) = json.loads(row["output_messages"])
    assert (out["role"], out["finish_reason"]) == ("assistant", "stop")
    assert out["parts"][0]["content"] == "It was sent on Monday."
    assert [r["event_name"] for r in row["logs"]] == [
        "gen_ai.system.message", "gen_ai.user.message", "gen_ai.choice"]
    ctx = span.get_span_context()
    assert all(r["trace_id"] == format(ctx.trace_id, "032x") for r in row["logs"])
    assert all(r["span_id"] == format(ctx.span_id, "016x") for r in row["logs"])
    with Store(collector.opts.store) as st:  # a trace fetch joins the content too
        (traced,) = st.trace(format(ctx.trace_id, "032x")).rows
    assert traced["input_messages"] == row["input_messages"]


def test_the_details_record_fills_the_span_even_when_the_span_came_first(collector):
    tp, lp, span_exporter = _providers(collector, "grpc")
    tracer, logger = tp.get_tracer("acme"), lp.get_logger("acme")
    with tracer.start_as_current_span("chat claude") as span:
        span.set_attributes({"gen_ai.operation.name": "chat",
                             "gen_ai.provider.name": "anthropic"})
    span_exporter.export([span])  # the span first, this time
    span_exporter.shutdown()
    collector.pipeline.flush()
    with trace_api.use_span(span, end_on_exit=False):
        logger.emit(event_name="gen_ai.client.inference.operation.details", attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
            "gen_ai.input.messages": json.dumps(
                [{"role": "user", "parts": [{"type": "text", "content": "Summarise PR 4821"}]}]),
            "gen_ai.output.messages": json.dumps(
                [{"role": "assistant", "finish_reason": "stop",
                  "parts": [{"type": "text", "content": "Adds tax_region."}]}])})
    lp.shutdown()
    row = _row(collector, "chat claude")
    assert json.loads(row["system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(row["input_messages"])[0]["parts"][0]["content"] == "Summarise PR 4821"
    assert json.loads(row["output_messages"])[0]["parts"][0]["content"] == "Adds tax_region."


def test_log_records_are_kept_losslessly_and_bad_ids_rejected(collector):

    req = ExportLogsServiceRequest()
    sl = req.resource_logs.add().scope_logs.add()
    good = sl.log_records.add()
    good.severity_text, good.body.string_value = "WARN", "disk 91% full"
    good.time_unix_nano = 1_763_000_000_000_000_000
    bad = sl.log_records.add()
    bad.trace_id = b"\x01\x02"  # wrong length
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as ch:
        call = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                              request_serializer=None, response_deserializer=None)
        resp = ExportLogsServiceResponse.FromString(call(req.SerializeToString(), timeout=10))
    assert resp.partial_success.rejected_log_records == 1
    collector.pipeline.flush()
    with Store(collector.opts.store) as st:
        rows = st.sql("select severity_text, body, trace_id from logs").rows
    assert rows == [{"severity_text": "WARN", "body": '"disk 91% full"', "trace_id": None}]
