"""A real GenAI instrumentation (opentelemetry-instrumentation-openai-v2) around the real
openai client, calling a fake OpenAI-compatible server on loopback, exporting with the real
OTLP exporters to a real collector: the prompt and output land in the audit record in both
content modes, on the span (span_only) or as a log record (event_only)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from aitrail.store.query import Store

COMPLETION = {
    "id": "chatcmpl-42", "object": "chat.completion", "created": 1763900000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Your refund left on Monday."}}],
    "usage": {"prompt_tokens": 21, "completion_tokens": 7, "total_tokens": 28},
}


class _FakeOpenAI(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(COMPLETION).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def fake_openai() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("mode", ["span_only", "event_only"])
def test_openai_v2_prompts_and_outputs_reach_the_audit_record(collector, fake_openai,
                                                              monkeypatch, mode):
    import openai
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", mode)
    endpoint = f"127.0.0.1:{collector.grpc_port}"
    resource = Resource.create({"service.name": "support-bot"})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint,
                                                               insecure=True)))
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=endpoint,
                                                                         insecure=True)))
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tp, logger_provider=lp)
    try:
        client = openai.OpenAI(base_url=fake_openai, api_key="not-a-real-key")
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "system", "content": "You answer billing questions."},
            {"role": "user", "content": "Where is my refund for order 1182?"}])
        assert reply.choices[0].message.content == "Your refund left on Monday."
    finally:
        instrumentor.uninstrument()
        tp.shutdown()
        lp.shutdown()

    collector.pipeline.flush()
    with Store(collector.opts.store) as st:
        (row,) = st.sql("select ai_kind, source_convention, provider, request_model, "
                        "response_model, input_tokens, output_tokens, input_messages, "
                        "output_messages from spans").rows
        events = [r["event_name"] for r in st.sql("select event_name from logs").rows]
    assert (row["ai_kind"], row["source_convention"], row["provider"]) == (
        "llm", "otel-genai", "openai")
    assert (row["request_model"], row["response_model"]) == (
        "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert (row["input_tokens"], row["output_tokens"]) == (21, 7)
    prompt = [(m["role"], m["parts"][0]["content"]) for m in json.loads(row["input_messages"])]
    assert prompt == [("system", "You answer billing questions."),
                      ("user", "Where is my refund for order 1182?")]
    (out,) = json.loads(row["output_messages"])
    assert out["parts"][0]["content"] == "Your refund left on Monday."
    expected_events = ["gen_ai.client.inference.operation.details"] if mode == "event_only" \
        else []
    assert events == expected_events
