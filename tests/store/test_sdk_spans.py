"""Spans made by the real OpenTelemetry SDK, encoded by its own OTLP encoder, land as rows."""

from __future__ import annotations

import json

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from aitrail.store.ingest import Ingester
from aitrail.store.query import Store


def test_sdk_spans_of_an_agent_run_become_audit_rows(tmp_path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "pr-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("acme.agent", "1.2.0")
    with tracer.start_as_current_span("invoke_agent pr-bot") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        root.set_attribute("gen_ai.agent.name", "pr-bot")
        root.set_attribute("aitrail.change.id", "chg-sdk-1")
        with tracer.start_as_current_span("chat gpt-4.1") as chat:
            chat.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4.1", "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 30, "aitrail.change.id": "chg-sdk-1",
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "bump lodash"}]}]),
            })
        with tracer.start_as_current_span("policy.check deps") as policy:
            policy.set_attributes({"aitrail.policy.id": "deps", "aitrail.policy.version": "v1",
                                   "aitrail.policy.verdict": "deny",
                                   "aitrail.policy.action": "block",
                                   "aitrail.change.id": "chg-sdk-1"})
            policy.set_status(Status(StatusCode.ERROR, "blocked by policy"))
    provider.shutdown()
    spans = exporter.get_finished_spans()
    ing = Ingester(tmp_path, "acme")
    ing.add(encode_spans(spans))
    ing.flush()
    assert ing.report.spans == 3 and not ing.report.rejected

    with Store(tmp_path) as store:
        rows = {r["name"]: r for r in store.change_spans("chg-sdk-1").rows}
    assert set(rows) == {"invoke_agent pr-bot", "chat gpt-4.1", "policy.check deps"}
    chat = rows["chat gpt-4.1"]
    assert (chat["ai_kind"], chat["provider"], chat["request_model"]) == ("llm", "openai",
                                                                          "gpt-4.1")
    assert (chat["input_tokens"], chat["output_tokens"]) == (120, 30)
    assert json.loads(chat["input_messages"])[0]["parts"][0]["content"] == "bump lodash"
    assert json.loads(chat["attributes"])["gen_ai.input.messages"] == chat["input_messages"]
    assert chat["tenant"] == "acme" and chat["service_name"] == "pr-bot"
    assert chat["scope_name"] == "acme.agent" and chat["scope_version"] == "1.2.0"
    policy = rows["policy.check deps"]
    assert (policy["ai_kind"], policy["policy_verdict"]) == ("guardrail", "deny")
    assert policy["status_code"] == "error" and policy["status_message"] == "blocked by policy"
    root = rows["invoke_agent pr-bot"]
    assert chat["parent_span_id"] == root["span_id"] and root["parent_span_id"] is None
    assert root["trace_id"] == format(spans[0].context.trace_id, "032x")
