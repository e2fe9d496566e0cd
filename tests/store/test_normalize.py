"""Golden tests: real span shapes -> the audit columns of one record.

Each case is a span as an instrumentation library really emits it (the captured shapes of
../shared/reference/conventions.md section 7, plus the older, proposed and aitrail-own forms
of sections 1-6). It travels the real path: an OTLP ExportTraceServiceRequest protobuf, then
`records.build_batch` with a `Normalizer`, and the audit values are read back out of
`batch.columns`. A case lists every audit column it expects filled; every other audit column
must stay empty. Adding a shape is adding a `Case`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from aitrail.store.anyvalue import dict_to_attrs
from aitrail.store.normalize import Normalizer
from aitrail.store.records import build_batch
from aitrail.store.schema import AUDIT_NAMES, NORMALIZER_VERSION

CLIENT = Span.SPAN_KIND_CLIENT
INTERNAL = Span.SPAN_KIND_INTERNAL

# Audit columns holding JSON text: compared as parsed values, not as strings.
JSON_COLUMNS = frozenset({
    "system_instructions", "input_messages", "output_messages", "tool_arguments",
    "tool_result", "documents", "decisions", "feature_flags",
})

# -- the call every section 7 capture made (conventions.md 7, setup paragraph) ----------------

SYSTEM = "You are a coding agent. Only open PRs for approved tickets."
USER = "Fix the login bug in ticket JIRA-12"
ARGS = {"branch": "fix/login", "title": "Fix login"}
ARGS_JSON = '{"branch": "fix/login", "title": "Fix login"}'
PR_RESULT = {"pr": 1234, "url": "https://git.example/pr/1234"}
DOC_META = {"repo": "acme/web", "commit": "9d5940"}

# The OTel GenAI part-based shapes every convention is folded onto (conventions.md 1.4).
INPUT_MESSAGES = [
    {"role": "system", "parts": [{"type": "text", "content": SYSTEM}]},
    {"role": "user", "parts": [{"type": "text", "content": USER}]},
]
TOOL_CALL_PART = {"type": "tool_call", "id": "call_42", "name": "open_pull_request",
                  "arguments": ARGS}


def output_messages(finish_reason: str | None) -> list[dict[str, Any]]:
    msg: dict[str, Any] = {"role": "assistant", "parts": [TOOL_CALL_PART]}
    if finish_reason is not None:
        msg["finish_reason"] = finish_reason
    return [msg]


def flat_messages(prefix: str, messages: list[tuple[str, str]]) -> dict[str, str]:
    """[(role, content)] flattened as `{prefix}.{i}.role` / `.content` (prefix includes
    OpenInference's `message` infix, e.g. "llm.input_messages.{i}.message")."""
    out: dict[str, str] = {}
    for i, (role, content) in enumerate(messages):
        out[f"{prefix.format(i=i)}.role"] = role
        out[f"{prefix.format(i=i)}.content"] = content
    return out


# -- captured attribute sets ------------------------------------------------------------------

OTEL_CHAT = {  # 7.1, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT unset
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini", "server.address": "api.openai.com",
    "gen_ai.request.temperature": 0.2, "gen_ai.response.finish_reasons": ["tool_calls"],
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": "chatcmpl-abc123",
    "gen_ai.usage.input_tokens": 57, "gen_ai.usage.output_tokens": 21,
}
OTEL_INPUT_JSON = (
    '[{"role":"system","parts":[{"content":"You are a coding agent. Only open PRs for approved'
    ' tickets.","type":"text"}]},{"role":"user","parts":[{"content":"Fix the login bug in ticket'
    ' JIRA-12","type":"text"}]}]'
)
OTEL_OUTPUT_JSON = (
    '[{"role":"assistant","parts":[{"arguments":{"branch":"fix/login","title":"Fix login"},'
    '"name":"open_pull_request","id":"call_42","type":"tool_call"}],"finish_reason":"tool_calls"}]'
)
OTEL_CHAT_CONTENT = {  # 7.1, span_and_event
    **OTEL_CHAT,
    "gen_ai.input.messages": OTEL_INPUT_JSON,
    "gen_ai.output.messages": OTEL_OUTPUT_JSON,
}

RETRIEVAL_DOCS_JSON = (
    '[{"id":"src/auth/login.py#L10-40","score":0.91},{"id":"docs/auth.md","score":0.72}]'
)
TOOL_ARGS_JSON = '{"branch":"fix/login","title":"Fix login"}'
TOOL_RESULT_JSON = '{"pr":1234,"url":"https://git.example/pr/1234"}'

OPENLLMETRY_INPUT_JSON = (
    '[{"role": "system", "parts": [{"content": "You are a coding agent. Only open PRs for'
    ' approved tickets.", "type": "text"}]}, {"role": "user", "parts": [{"content": "Fix the'
    ' login bug in ticket JIRA-12", "type": "text"}]}]'
)
OPENLLMETRY_OUTPUT_JSON = (
    '[{"role": "assistant", "parts": [{"type": "tool_call", "name": "open_pull_request", "id":'
    ' "call_42", "arguments": {"branch": "fix/login", "title": "Fix login"}}], "finish_reason":'
    ' "tool_call"}]'
)
TOOL_DEFINITIONS_JSON = (
    '[{"type": "function", "name": "open_pull_request", "description": "Open a PR",'
    ' "parameters": {"type": "object", "properties": {"branch": {"type": "string"}, "title":'
    ' {"type": "string"}}}}]'
)
OPENLLMETRY_CHAT = {  # 7.3
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.request.temperature": 0.2,
    "gen_ai.user": "u-123", "gen_ai.is_streaming": False,
    "gen_ai.openai.api_base": "https://api.openai.com/v1/",
    "gen_ai.input.messages": OPENLLMETRY_INPUT_JSON,
    "gen_ai.tool.definitions": TOOL_DEFINITIONS_JSON,
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": "chatcmpl-abc123",
    "gen_ai.response.finish_reasons": ["tool_call"],
    "gen_ai.usage.total_tokens": 78, "gen_ai.usage.output_tokens": 21,
    "gen_ai.usage.input_tokens": 57, "gen_ai.usage.cache_read.input_tokens": 0,
    "gen_ai.output.messages": OPENLLMETRY_OUTPUT_JSON,
}


def openllmetry_legacy_chat(system: str) -> dict[str, Any]:
    """7.3 prose: the same call through instrumentation <= 0.53.3."""
    return {
        "llm.request.type": "chat", "gen_ai.system": system,
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.request.temperature": 0.2,
        "llm.user": "u-123", "llm.is_streaming": False,
        "gen_ai.openai.api_base": "https://api.openai.com/v1/",
        "llm.request.functions.0.name": "open_pull_request",
        "llm.request.functions.0.description": "Open a PR",
        "llm.request.functions.0.parameters":
            '{"type": "object", "properties": {"branch": {"type": "string"}}}',
        **flat_messages("gen_ai.prompt.{i}", [("system", SYSTEM), ("user", USER)]),
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-abc123",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.finish_reason": "tool_calls",
        "gen_ai.completion.0.tool_calls.0.id": "call_42",
        "gen_ai.completion.0.tool_calls.0.name": "open_pull_request",
        "gen_ai.completion.0.tool_calls.0.arguments": ARGS_JSON,
        "llm.usage.total_tokens": 78,
        "gen_ai.usage.prompt_tokens": 57, "gen_ai.usage.completion_tokens": 21,
    }


OPENINFERENCE_CHAT = {  # 7.4 (input.value / output.value / schema written out in full)
    "openinference.span.kind": "LLM", "llm.provider": "openai", "llm.system": "openai",
    "session.id": "sess-9", "user.id": "u-123", "metadata": '{"ticket": "JIRA-12"}',
    "tag.tags": ["coding-agent"],
    "input.mime_type": "application/json",
    "input.value": json.dumps({
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}],
        "model": "gpt-4o-mini", "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "open_pull_request"}}],
        "user": "u-123"}),
    "output.mime_type": "application/json",
    "output.value": json.dumps({
        "id": "chatcmpl-abc123",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "tool_calls": [{"id": "call_42", "type": "function",
                                                 "function": {"name": "open_pull_request",
                                                              "arguments": ARGS_JSON}}]}}],
        "usage": {"prompt_tokens": 57, "completion_tokens": 21, "total_tokens": 78}}),
    "llm.invocation_parameters": '{"model": "gpt-4o-mini", "temperature": 0.2, "user": "u-123"}',
    "llm.tools.0.tool.json_schema":
        '{"type": "function", "function": {"name": "open_pull_request"}}',
    **flat_messages("llm.input_messages.{i}.message", [("system", SYSTEM), ("user", USER)]),
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.token_count.prompt": 57, "llm.token_count.completion": 21, "llm.token_count.total": 78,
    "llm.token_count.prompt_details.cache_read": 0,
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_42",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "open_pull_request",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": ARGS_JSON,
    "llm.finish_reason": "tool_calls",
}
OPENINFERENCE_DUAL_WRITE = {  # 7.4 prose: OPENINFERENCE_ENABLE_GENAI_SEMCONV=true
    **OPENINFERENCE_CHAT,
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
    "gen_ai.conversation.id": "sess-9",
    # filled from llm.model_name, i.e. the *response* model
    "gen_ai.request.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 57, "gen_ai.usage.output_tokens": 21,
    "gen_ai.input.messages": OPENLLMETRY_INPUT_JSON,
    "gen_ai.output.messages": OPENLLMETRY_OUTPUT_JSON,
    "gen_ai.tool.definitions": TOOL_DEFINITIONS_JSON,
}

OI_RETRIEVER = {  # 7.5 without the dual-writer
    "openinference.span.kind": "RETRIEVER", "session.id": "sess-9", "user.id": "u-123",
    "input.value": "login handler", "input.mime_type": "text/plain",
    "retrieval.documents.0.document.id": "src/auth/login.py#L10-40",
    "retrieval.documents.0.document.content": "def login(user, pw): ...",
    "retrieval.documents.0.document.score": 0.91,
    "retrieval.documents.0.document.metadata": '{"repo": "acme/web", "commit": "9d5940"}',
}
OI_RETRIEVER_DOCS_JSON = (
    '[{"id": "src/auth/login.py#L10-40", "score": 0.91, "content": "def login(user, pw): ...",'
    ' "metadata": {"repo": "acme/web", "commit": "9d5940"}}]'
)
OI_DOCUMENTS = [{"id": "src/auth/login.py#L10-40", "score": 0.91,
                 "content": "def login(user, pw): ...", "metadata": DOC_META}]

# GenAI <= 1.27 content events carry chat-completions style JSON (conventions.md 1.5).
LEGACY_PROMPT_JSON = json.dumps([{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": USER}])
LEGACY_COMPLETION_JSON = json.dumps([{"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_42", "type": "function",
     "function": {"name": "open_pull_request", "arguments": ARGS_JSON}}]}])


# -- the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    attrs: dict[str, Any]
    expect: dict[str, Any]  # every audit column that must be filled, JSON columns parsed
    name: str = "span"
    kind: int = INTERNAL
    events: tuple[tuple[str, dict[str, Any]], ...] = ()
    resource: dict[str, Any] = field(default_factory=dict)
    lifted: dict[str, str] = field(default_factory=dict)  # attribute key -> audit column
    mapping: dict[str, list[str]] | None = None  # aitrail.toml [mapping]


CASES = [
    Case(
        "7.1-otel-openai-v2-chat-with-content", OTEL_CHAT_CONTENT,
        name="chat gpt-4o-mini", kind=CLIENT,
        expect={
            "ai_kind": "llm", "source_convention": "otel-genai", "operation": "chat",
            "provider": "openai", "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 57,
            "output_tokens": 21, "input_messages": INPUT_MESSAGES,
            "output_messages": output_messages("tool_calls"),
        },
        lifted={"gen_ai.input.messages": "input_messages",
                "gen_ai.output.messages": "output_messages"},
    ),
    Case(
        "7.1-otel-openai-v2-chat-without-content", OTEL_CHAT,
        name="chat gpt-4o-mini", kind=CLIENT,
        expect={
            "ai_kind": "llm", "source_convention": "otel-genai", "operation": "chat",
            "provider": "openai", "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 57,
            "output_tokens": 21,
        },
    ),
    Case(
        "7.2-util-genai-invoke-agent",
        {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "coding-agent",
         "gen_ai.request.model": "gpt-4o-mini"},
        name="invoke_agent coding-agent",
        expect={
            "ai_kind": "agent", "source_convention": "otel-genai",
            "operation": "invoke_agent", "request_model": "gpt-4o-mini",
            "agent_name": "coding-agent",
        },
    ),
    Case(
        "7.2-util-genai-retrieval",
        {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "code-index",
         "gen_ai.provider.name": "chroma", "gen_ai.request.top_k": 3,
         "gen_ai.retrieval.query.text": "login handler",
         "gen_ai.retrieval.documents": RETRIEVAL_DOCS_JSON},
        name="retrieval code-index", kind=CLIENT,
        expect={
            "ai_kind": "retrieval", "source_convention": "otel-genai",
            "operation": "retrieval", "provider": "chroma",
            "retrieval_query": "login handler", "data_source": "code-index",
            "documents": [{"id": "src/auth/login.py#L10-40", "score": 0.91},
                          {"id": "docs/auth.md", "score": 0.72}],
        },
        lifted={"gen_ai.retrieval.documents": "documents"},
    ),
    Case(
        "7.2-util-genai-execute-tool",
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "open_pull_request",
         "gen_ai.tool.call.id": "call_42", "gen_ai.tool.type": "function",
         "gen_ai.tool.description": "Open a PR",
         "gen_ai.tool.call.arguments": TOOL_ARGS_JSON,
         "gen_ai.tool.call.result": TOOL_RESULT_JSON},
        name="execute_tool open_pull_request",
        expect={
            "ai_kind": "tool", "source_convention": "otel-genai",
            "operation": "execute_tool", "tool_name": "open_pull_request",
            "tool_call_id": "call_42", "tool_arguments": ARGS, "tool_result": PR_RESULT,
        },
        lifted={"gen_ai.tool.call.arguments": "tool_arguments",
                "gen_ai.tool.call.result": "tool_result"},
    ),
    Case(
        "7.3-openllmetry-current-chat", OPENLLMETRY_CHAT,
        name="openai.chat", kind=CLIENT,
        expect={
            "ai_kind": "llm", "source_convention": "openllmetry", "operation": "chat",
            "provider": "openai", "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 57,
            "output_tokens": 21, "input_messages": INPUT_MESSAGES,
            "output_messages": output_messages("tool_call"), "user_id": "u-123",
        },
        lifted={"gen_ai.input.messages": "input_messages",
                "gen_ai.output.messages": "output_messages"},
    ),
    Case(
        "7.3-openllmetry-legacy-flattened-chat", openllmetry_legacy_chat("openai"),
        name="openai.chat", kind=CLIENT,
        expect={
            "ai_kind": "llm", "source_convention": "openllmetry-legacy", "operation": "chat",
            "provider": "openai", "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 57,
            "output_tokens": 21, "input_messages": INPUT_MESSAGES,
            "output_messages": output_messages("tool_calls"), "user_id": "u-123",
        },
    ),
    Case(
        "3.3-openllmetry-legacy-azure-provider-alias", openllmetry_legacy_chat("Azure"),
        name="openai.chat", kind=CLIENT,
        expect={
            "ai_kind": "llm", "source_convention": "openllmetry-legacy", "operation": "chat",
            "provider": "azure.ai.openai", "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 57,
            "output_tokens": 21, "input_messages": INPUT_MESSAGES,
            "output_messages": output_messages("tool_calls"), "user_id": "u-123",
        },
    ),
    Case(
        "7.4-openinference-llm", OPENINFERENCE_CHAT, name="ChatCompletion",
        expect={
            "ai_kind": "llm", "source_convention": "openinference", "operation": "chat",
            "provider": "openai",
            # llm.invocation_parameters.model is the requested model; llm.model_name is
            # the served one (conventions.md 6.3).
            "request_model": "gpt-4o-mini", "response_model": "gpt-4o-mini-2024-07-18",
            "input_tokens": 57, "output_tokens": 21, "input_messages": INPUT_MESSAGES,
            "output_messages": output_messages("tool_calls"), "user_id": "u-123",
            "session_id": "sess-9",
        },
    ),
    Case(
        "7.4-openinference-llm-with-genai-dual-write", OPENINFERENCE_DUAL_WRITE,
        name="ChatCompletion",
        expect={
            "ai_kind": "llm", "source_convention": "openinference", "operation": "chat",
            "provider": "openai",
            # not the dual-writer's gen_ai.request.model, which holds the response model
            "request_model": "gpt-4o-mini", "response_model": "gpt-4o-mini-2024-07-18",
            "input_tokens": 57, "output_tokens": 21, "input_messages": INPUT_MESSAGES,
            "output_messages": output_messages("tool_call"), "user_id": "u-123",
            "session_id": "sess-9",
        },
        lifted={"gen_ai.input.messages": "input_messages",
                "gen_ai.output.messages": "output_messages"},
    ),
    Case(
        "7.5-openinference-retriever-with-genai-dual-write",
        {**OI_RETRIEVER, "gen_ai.operation.name": "retrieval",
         "gen_ai.conversation.id": "sess-9", "gen_ai.retrieval.query.text": "login handler",
         "gen_ai.retrieval.documents": OI_RETRIEVER_DOCS_JSON},
        name="retrieve",
        expect={
            "ai_kind": "retrieval", "source_convention": "openinference",
            "operation": "retrieval", "retrieval_query": "login handler",
            "documents": OI_DOCUMENTS, "user_id": "u-123", "session_id": "sess-9",
        },
        lifted={"gen_ai.retrieval.documents": "documents"},
    ),
    Case(
        "7.5-openinference-retriever-flattened-only", OI_RETRIEVER, name="retrieve",
        expect={
            "ai_kind": "retrieval", "source_convention": "openinference",
            "operation": "retrieval", "retrieval_query": "login handler",
            "documents": OI_DOCUMENTS, "user_id": "u-123", "session_id": "sess-9",
        },
    ),
    Case(
        "7.5-openinference-guardrail",
        {"openinference.span.kind": "GUARDRAIL", "session.id": "sess-9", "user.id": "u-123",
         "input.value": '{"diff": "+AWS_SECRET_ACCESS_KEY=..."}',
         "input.mime_type": "application/json",
         "output.value":
             '{"action": "GUARDRAIL_INTERVENED", "actionReason": "secret detected"}',
         "output.mime_type": "application/json"},
        name="guard",
        expect={
            "ai_kind": "guardrail", "source_convention": "openinference",
            "operation": "apply_guardrail", "user_id": "u-123", "session_id": "sess-9",
            "decisions": [{"kind": "guardrail", "source": "openinference",
                           "native_verdict": "GUARDRAIL_INTERVENED",
                           "reason": "secret detected", "verdict": "deny"}],
            "policy_verdict": "deny",
        },
    ),
    Case(
        "1.5-otel-genai-1.27-content-span-events",
        {"gen_ai.system": "openai", "gen_ai.operation.name": "chat",
         "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
         "gen_ai.usage.input_tokens": 57, "gen_ai.usage.output_tokens": 21},
        name="chat gpt-4o-mini", kind=CLIENT,
        events=(("gen_ai.content.prompt", {"gen_ai.prompt": LEGACY_PROMPT_JSON}),
                ("gen_ai.content.completion", {"gen_ai.completion": LEGACY_COMPLETION_JSON})),
        expect={
            "ai_kind": "llm", "source_convention": "otel-genai-legacy", "operation": "chat",
            "provider": "openai", "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 57,
            "output_tokens": 21, "input_messages": INPUT_MESSAGES,
            "output_messages": output_messages(None),
        },
    ),
    Case(
        "1.5-otel-genai-1.27-content-span-events-plain-text",
        {"gen_ai.system": "az.ai.openai", "gen_ai.operation.name": "chat",
         "gen_ai.request.model": "gpt-4o"},
        name="chat gpt-4o", kind=CLIENT,
        events=(("gen_ai.content.prompt", {"gen_ai.prompt": USER}),
                ("gen_ai.content.completion", {"gen_ai.completion": "Opened PR #1234."})),
        expect={
            "ai_kind": "llm", "source_convention": "otel-genai-legacy", "operation": "chat",
            "provider": "azure.ai.openai", "request_model": "gpt-4o",
            # a bare prompt string says nothing about its role; a completion is the model's
            "input_messages": [{"role": None, "parts": [{"type": "text", "content": USER}]}],
            "output_messages": [{"role": "assistant",
                                 "parts": [{"type": "text", "content": "Opened PR #1234."}]}],
        },
    ),
    Case(
        "5-proposed-gen-ai-guardrail-apply-guardrail",
        {"gen_ai.operation.name": "apply_guardrail",
         "gen_ai.provider.name": "azure.ai.content_safety",
         "gen_ai.guardrail.component.name": "secrets-scanner",
         "gen_ai.guardrail.policy.id": "no-secrets", "gen_ai.guardrail.policy.version": "2",
         "gen_ai.guardrail.policy.rule.id": "aws-access-key",
         "gen_ai.guardrail.source": "tool_input",
         "gen_ai.guardrail.result.type": "action", "gen_ai.guardrail.result.value": "BLOCKED",
         "gen_ai.guardrail.result.reason": "AWS access key in diff",
         "gen_ai.guardrail.risk.category": "secret_leak",
         "gen_ai.guardrail.risk.score": 0.98},
        name="apply_guardrail secrets-scanner", kind=CLIENT,
        expect={
            "ai_kind": "guardrail", "source_convention": "otel-genai",
            "operation": "apply_guardrail", "provider": "azure.ai.content_safety",
            "decisions": [{"kind": "guardrail", "source": "gen_ai.guardrail",
                           "component": "secrets-scanner", "policy_id": "no-secrets",
                           "policy_version": "2", "rule": "aws-access-key",
                           "stage": "tool_input", "native_type": "action",
                           "native_verdict": "BLOCKED", "reason": "AWS access key in diff",
                           "category": "secret_leak", "score": 0.98, "verdict": "deny"}],
            "policy_id": "no-secrets", "policy_version": "2", "policy_verdict": "deny",
        },
    ),
    Case(
        "5-proposed-gen-ai-guardrail-security-draft",
        {"gen_ai.operation.name": "run_guardrail",
         "gen_ai.guardrail.target.type": "output", "gen_ai.guardrail.target.subtype": "llm",
         "gen_ai.guardrail.verdict.type": "modify",
         "gen_ai.guardrail.verdict.reason": "email address redacted",
         "gen_ai.guardrail.action.type": "modify",
         "gen_ai.guardrail.security.policy.id": "pii",
         "gen_ai.guardrail.security.policy.rule.id": "email"},
        name="run_guardrail pii",
        expect={
            "ai_kind": "guardrail", "source_convention": "otel-genai",
            "operation": "apply_guardrail",
            "decisions": [{"kind": "guardrail", "source": "gen_ai.guardrail.security",
                           "policy_id": "pii", "rule": "email", "stage": "output",
                           "native_verdict": "modify", "action": "modify",
                           "reason": "email address redacted", "verdict": "modify"}],
            "policy_id": "pii", "policy_verdict": "modify",
        },
    ),
    Case(
        "3.6-traceloop-guardrail-status",
        {"gen_ai.operation.name": "guardrail.run", "gen_ai.guardrail.name": "pii-check",
         "gen_ai.guardrail.status": "FAILED", "gen_ai.guardrail.duration": 12,
         "gen_ai.guardrail.guard_count": 2, "gen_ai.guardrail.failed_guard_count": 1,
         "traceloop.workflow.name": "autofix"},
        name="pii-check.guardrail",
        expect={
            "ai_kind": "guardrail", "source_convention": "openllmetry",
            "operation": "apply_guardrail",
            "decisions": [{"kind": "guardrail", "source": "traceloop",
                           "component": "pii-check", "native_verdict": "FAILED",
                           "verdict": "deny"}],
            "policy_verdict": "deny",
        },
    ),
    Case(
        "aitrail-policy-attributes",
        {"aitrail.policy.id": "pr-gate", "aitrail.policy.version": 3,
         "aitrail.policy.rule": "ticket-must-be-approved", "aitrail.policy.verdict": "deny",
         "aitrail.policy.action": "block", "aitrail.policy.reason": "JIRA-12 not approved"},
        name="policy pr-gate",
        expect={
            "ai_kind": "guardrail", "source_convention": "aitrail",
            "decisions": [{"kind": "policy", "source": "aitrail", "policy_id": "pr-gate",
                           "policy_version": 3, "rule": "ticket-must-be-approved",
                           "native_verdict": "deny", "action": "block",
                           "reason": "JIRA-12 not approved", "verdict": "deny"}],
            "policy_id": "pr-gate", "policy_version": "3", "policy_verdict": "deny",
        },
    ),
    Case(
        "aitrail-review-attributes",
        {"aitrail.review.required": True, "aitrail.review.reviewer": "alice@example.com",
         "aitrail.review.decision": "APPROVED"},
        name="review pr-1234",
        expect={
            "ai_kind": "review", "source_convention": "aitrail",
            "decisions": [{"kind": "review", "source": "aitrail",
                           "actor": "alice@example.com", "native_verdict": "APPROVED",
                           "verdict": "allow"}],
            "review_required": True, "reviewer": "alice@example.com",
            "review_decision": "approved",
        },
    ),
    Case(
        "aitrail-change-attributes",
        {"aitrail.change.id": "pr:acme/web#1234", "aitrail.change.kind": "pull_request",
         "aitrail.change.action": "open", "aitrail.change.target": "acme/web",
         "aitrail.change.url": "https://git.example/pr/1234",
         "aitrail.user.id": "svc-autofix", "enduser.id": "u-123"},
        name="open_pull_request",
        expect={
            "ai_kind": "change", "source_convention": "aitrail", "user_id": "svc-autofix",
            "change_id": "pr:acme/web#1234", "change_kind": "pull_request",
            "change_action": "open", "change_target": "acme/web",
            "change_url": "https://git.example/pr/1234",
        },
        # A long scalar taken verbatim is stored once too (schema.LIFT_MIN_CHARS).
        lifted={"aitrail.change.url": "change_url"},
    ),
    Case(
        "4-vcs-change-id-fallback",
        {"vcs.change.id": "1234", "vcs.change.title": "Fix login", "vcs.change.state": "open",
         "vcs.repository.url.full": "https://github.com/acme/web",
         "vcs.ref.head.name": "fix/login", "vcs.ref.base.name": "main"},
        name="pull_request opened",
        expect={
            "ai_kind": "change", "source_convention": "aitrail",
            "change_id": "vcs:https://github.com/acme/web#1234",
            "change_kind": "pull_request", "change_target": "https://github.com/acme/web",
        },
    ),
    Case(
        "4-deployment-id-fallback-with-resource-environment",
        {"deployment.id": "1208", "deployment.status": "succeeded"},
        resource={"deployment.environment.name": "production"},
        name="deploy web",
        expect={
            "ai_kind": "change", "source_convention": "aitrail",
            "change_id": "deploy:production#1208", "change_kind": "deploy",
            "change_target": "production", "deployment_environment": "production",
        },
    ),
    Case(
        "4-feature-flag-evaluation-span-events", OTEL_CHAT,
        name="chat gpt-4o-mini", kind=CLIENT,
        events=(
            ("feature_flag.evaluation", {
                "feature_flag.key": "ai-autofix-enabled", "feature_flag.result.variant": "on",
                "feature_flag.result.value": True,
                "feature_flag.result.reason": "targeting_match",
                "feature_flag.provider.name": "flagd"}),
            ("feature_flag.evaluation", {  # deprecated spellings
                "feature_flag.key": "ai-autofix-model", "feature_flag.variant": "mini",
                "feature_flag.evaluation.reason": "default",
                "feature_flag.provider_name": "flagd"}),
        ),
        expect={
            "ai_kind": "llm", "source_convention": "otel-genai", "operation": "chat",
            "provider": "openai", "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 57,
            "output_tokens": 21,
            "feature_flags": [
                {"key": "ai-autofix-enabled", "variant": "on", "value": True,
                 "reason": "targeting_match", "provider": "flagd"},
                {"key": "ai-autofix-model", "variant": "mini", "reason": "default",
                 "provider": "flagd"},
            ],
        },
    ),
    Case(
        "3.5-openllmetry-chroma-db-query-result-events",
        {"db.system": "chromadb", "db.operation": "query",
         "db.chroma.query.query_texts_count": 1, "db.chroma.query.n_results": 2},
        name="chroma.query", kind=CLIENT,
        events=(
            ("db.query.result", {
                "db.query.result.id": "src/auth/login.py#L10-40",
                "db.query.result.distance": 0.18,
                "db.query.result.metadata": '{"repo": "acme/web", "commit": "9d5940"}',
                "db.query.result.document": "def login(user, pw): ..."}),
            ("db.query.result", {
                "db.query.result.id": "docs/auth.md", "db.query.result.distance": 0.41,
                "db.query.result.document": "# Auth"}),
        ),
        expect={
            "ai_kind": "retrieval", "source_convention": "openllmetry",
            "operation": "retrieval",
            # a distance is not a score (smaller is closer): kept under its own name
            "documents": [{"id": "src/auth/login.py#L10-40", "distance": 0.18,
                           "content": "def login(user, pw): ...", "metadata": DOC_META},
                          {"id": "docs/auth.md", "distance": 0.41, "content": "# Auth"}],
        },
    ),
    Case(
        "3.5-openllmetry-pinecone-db-query-result-events",
        {"db.system": "pinecone", "db.operation": "query", "pinecone.query.top_k": 1,
         "traceloop.workflow.name": "autofix"},
        name="pinecone.query", kind=CLIENT,
        events=(("db.query.result", {
            "db.query.result.id": "vec-1", "db.query.result.score": 0.93,
            # Pinecone's instrumentation writes str(dict): not JSON, kept as text
            "db.query.result.metadata": "{'repo': 'acme/web'}"}),),
        expect={
            "ai_kind": "retrieval", "source_convention": "openllmetry",
            "operation": "retrieval",
            "documents": [{"id": "vec-1", "score": 0.93, "metadata": "{'repo': 'acme/web'}"}],
        },
    ),
    Case(
        "user-mapping-overrides-built-in-keys",
        {**OTEL_CHAT_CONTENT, "acme.llm.model": "acme-coder-v2", "enduser.id": "u-123",
         "acme.actor": "svc-autofix",
         "acme.prompt": '[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]',
         "acme.guard.outcome": "BLOCKED", "acme.guard.policy": "acme-pr-gate"},
        name="chat gpt-4o-mini", kind=CLIENT,
        mapping={"request_model": ["acme.llm.model"], "user_id": ["acme.actor"],
                 "input_messages": ["acme.prompt"], "policy_verdict": ["acme.guard.outcome"],
                 "policy_id": ["acme.guard.policy"]},
        expect={
            "ai_kind": "llm", "source_convention": "otel-genai", "operation": "chat",
            "provider": "openai", "request_model": "acme-coder-v2",
            "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 57,
            "output_tokens": 21,
            "input_messages": [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}],
            "output_messages": output_messages("tool_calls"), "user_id": "svc-autofix",
            "policy_id": "acme-pr-gate", "policy_verdict": "deny",
            # a site's mapped policy attributes make a decision like any other
            "decisions": [{"kind": "policy", "source": "mapping", "policy_id": "acme-pr-gate",
                           "native_verdict": "BLOCKED", "verdict": "deny"}],
        },
        # the built-in gen_ai.input.messages lost to acme.prompt, so it stays in `attributes`
        lifted={"acme.prompt": "input_messages", "gen_ai.output.messages": "output_messages"},
    ),
    Case(
        "user-mapping-falls-back-to-built-in-keys-when-absent", OTEL_CHAT_CONTENT,
        name="chat gpt-4o-mini", kind=CLIENT,
        mapping={"request_model": ["acme.llm.model"], "input_messages": ["acme.prompt"]},
        expect={
            "ai_kind": "llm", "source_convention": "otel-genai", "operation": "chat",
            "provider": "openai", "request_model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18", "input_tokens": 57,
            "output_tokens": 21, "input_messages": INPUT_MESSAGES,
            "output_messages": output_messages("tool_calls"),
        },
        lifted={"gen_ai.input.messages": "input_messages",
                "gen_ai.output.messages": "output_messages"},
    ),
]


# -- the real path: protobuf -> build_batch -> columns ----------------------------------------


def export_request(attrs: dict[str, Any], *, name: str = "span", kind: int = INTERNAL,
                   events: tuple[tuple[str, dict[str, Any]], ...] = (),
                   resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    """One span in an ExportTraceServiceRequest, attributes encoded as OTLP KeyValues."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    dict_to_attrs({"service.name": "coding-agent", **(resource or {})}, rs.resource.attributes)
    ss = rs.scope_spans.add()
    ss.scope.name = "tests.golden"
    sp = ss.spans.add()
    sp.trace_id = bytes.fromhex("5b8efff798038103d269b633813fc60c")
    sp.span_id = bytes.fromhex("eee19b7ec3c1b174")
    sp.name = name
    sp.kind = kind
    sp.start_time_unix_nano = 1_767_225_600_000_000_000
    sp.end_time_unix_nano = sp.start_time_unix_nano + 1_500_000_000
    dict_to_attrs(attrs, sp.attributes)
    for i, (ev_name, ev_attrs) in enumerate(events):
        ev = sp.events.add()
        ev.name = ev_name
        ev.time_unix_nano = sp.start_time_unix_nano + i + 1
        dict_to_attrs(ev_attrs, ev.attributes)
    return req


def ingest(case: Case) -> dict[str, Any]:
    """The single row build_batch makes of the case's span, as {column: value}."""
    req = export_request(case.attrs, name=case.name, kind=case.kind, events=case.events,
                         resource=case.resource)
    batch = build_batch([req], "default", Normalizer(case.mapping))
    assert batch.rejected == []
    assert len(batch) == 1
    return {col: values[0] for col, values in batch.columns.items()}


def audit_values(row: dict[str, Any]) -> dict[str, Any]:
    """The filled audit columns, JSON columns parsed."""
    out = {}
    for col in AUDIT_NAMES:
        v = row[col]
        if v is not None:
            out[col] = json.loads(v) if col in JSON_COLUMNS else v
    return out


def lifted_keys(row: dict[str, Any]) -> dict[str, str]:
    """Attributes stored as a {"$col": column} placeholder because a column holds them."""
    stored = json.loads(row["attributes"])
    return {k: v["$col"] for k, v in stored.items() if isinstance(v, dict) and set(v) == {"$col"}}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_span_shape_fills_exactly_the_expected_audit_columns(case: Case) -> None:
    expected = dict(case.expect)
    if "source_convention" in expected:
        expected["normalizer_version"] = NORMALIZER_VERSION
    assert audit_values(ingest(case)) == expected


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_verbatim_attributes_are_lifted_into_their_column(case: Case) -> None:
    row = ingest(case)
    assert lifted_keys(row) == case.lifted
    for key, col in case.lifted.items():
        assert row[col] == case.attrs[key], "a lifted value must be stored byte-for-byte"


@pytest.mark.parametrize("completion", [
    '[{"role": "assistant", "tool_calls": "open_pull_request"}]',
    '[{"role": "assistant", "tool_calls": [{"id": "call_42", "function": "open_pull_request"}]}]',
    '[{"message": {"role": "assistant", "tool_calls": [42]}}]',
], ids=["tool-calls-a-string", "function-a-string", "tool-call-a-number"])
def test_malformed_legacy_completion_event_still_yields_a_row(completion: str) -> None:
    row = ingest(Case("malformed", {"gen_ai.system": "openai", "gen_ai.operation.name": "chat"},
                      {}, events=(("gen_ai.content.completion",
                                   {"gen_ai.completion": completion}),)))
    assert row["ai_kind"] == "llm"
    assert json.loads(row["output_messages"])[0]["role"] == "assistant"


# Provider spellings of every generation, folded onto the OTel provider enum (conventions.md
# 6.2 `provider` row). Each row: span attributes, expected provider.
PROVIDER_ALIASES = [
    ({"llm.request.type": "chat", "gen_ai.system": "Azure"}, "azure.ai.openai"),
    ({"llm.request.type": "chat", "gen_ai.system": "AWS"}, "aws.bedrock"),
    ({"llm.request.type": "chat", "gen_ai.system": "OpenRouter"}, "openrouter"),
    ({"llm.request.type": "chat", "gen_ai.system": "Anthropic"}, "anthropic"),
    ({"gen_ai.operation.name": "chat", "gen_ai.system": "az.ai.openai"}, "azure.ai.openai"),
    ({"gen_ai.operation.name": "chat", "gen_ai.system": "az.ai.inference"},
     "azure.ai.inference"),
    ({"gen_ai.operation.name": "chat", "gen_ai.system": "vertex_ai"}, "gcp.vertex_ai"),
    ({"gen_ai.operation.name": "chat", "gen_ai.system": "gemini"}, "gcp.gemini"),
    ({"gen_ai.operation.name": "chat", "gen_ai.system": "xai"}, "x_ai"),
    ({"openinference.span.kind": "LLM", "llm.provider": "azure", "llm.system": "openai"},
     "azure.ai.openai"),
    ({"openinference.span.kind": "LLM", "llm.system": "mistralai"}, "mistral_ai"),
    ({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "aws.bedrock"}, "aws.bedrock"),
]


PROVIDER_KEYS = ("gen_ai.provider.name", "llm.provider", "gen_ai.system", "llm.system")


@pytest.mark.parametrize(
    ("attrs", "provider"), PROVIDER_ALIASES,
    ids=[f"{next(a[k] for k in PROVIDER_KEYS if k in a)}->{p}" for a, p in PROVIDER_ALIASES])
def test_provider_spellings_fold_onto_the_otel_provider_enum(
        attrs: dict[str, Any], provider: str) -> None:
    row = ingest(Case("provider", attrs, {}))
    assert row["provider"] == provider
    assert row["ai_kind"] == "llm"
