"""Convention mappings as data: adding a convention or an alias is adding rows.

Sources: ../shared/reference/conventions.md sections 1-6 (OTel GenAI current and deprecated
forms, OpenInference, OpenLLMetry current and legacy, vcs/cicd/deployment/feature_flag) and
aitrail's own attributes (docs/conventions.md). Keys are tried in order; the first present
and non-empty wins. Span attributes are searched before resource attributes.
"""

from __future__ import annotations

# Scalar audit columns: candidate attribute keys in priority order.
SCALAR_RULES: dict[str, tuple[str, ...]] = {
    "operation": ("gen_ai.operation.name",),
    "provider": ("gen_ai.provider.name", "llm.provider", "gen_ai.system", "llm.system"),
    "request_model": (
        "gen_ai.request.model", "llm.request.model_name", "llm.invocation_parameters.model",
        "llm.model_name", "embedding.model_name", "reranker.model_name",
    ),
    "response_model": ("gen_ai.response.model", "llm.response.model_name", "llm.model_name"),
    "input_tokens": (
        "gen_ai.usage.input_tokens", "llm.token_count.prompt", "gen_ai.usage.prompt_tokens",
    ),
    "output_tokens": (
        "gen_ai.usage.output_tokens", "llm.token_count.completion",
        "gen_ai.usage.completion_tokens",
    ),
    "tool_name": ("gen_ai.tool.name", "tool.name"),
    "tool_call_id": ("gen_ai.tool.call.id", "tool.id"),
    "retrieval_query": ("gen_ai.retrieval.query.text", "reranker.query"),
    "data_source": ("gen_ai.data_source.id",),
    "user_id": (
        "aitrail.user.id", "enduser.id", "user.id", "traceloop.association.properties.user_id",
        "gen_ai.user", "llm.user",
    ),
    "session_id": (
        "session.id", "gen_ai.conversation.id", "traceloop.association.properties.session_id",
    ),
    "agent_name": ("gen_ai.agent.name", "agent.name", "graph.node.name"),
    "review_required": ("aitrail.review.required",),
    "reviewer": ("aitrail.review.reviewer",),
    "review_decision": ("aitrail.review.decision",),
    "change_id": ("aitrail.change.id",),
    "change_kind": ("aitrail.change.kind",),
    "change_action": ("aitrail.change.action",),
    "change_target": ("aitrail.change.target",),
    "change_url": ("aitrail.change.url", "vcs.change.url", "cicd.pipeline.run.url.full"),
    "deployment_environment": ("deployment.environment.name", "deployment.environment"),
    "error_type": ("error.type", "exception.type"),
}

# Per-convention replacements of SCALAR_RULES entries. OpenInference's GenAI dual-writer fills
# gen_ai.request.model from llm.model_name, i.e. the *served* model (conventions.md 7.4), so on
# OpenInference spans the requested model is read from OpenInference's own keys first (6.3).
CONVENTION_SCALAR_RULES: dict[str, dict[str, tuple[str, ...]]] = {
    "openinference": {
        "request_model": (
            "llm.request.model_name", "llm.invocation_parameters.model", "llm.model_name",
            "embedding.model_name", "reranker.model_name", "gen_ai.request.model",
        ),
    },
}

# Keys that name a member of a JSON-string attribute: key -> (attribute, member).
# OpenInference puts every request parameter in one JSON string (conventions.md 2.2).
JSON_MEMBER_KEYS: dict[str, tuple[str, str]] = {
    "llm.invocation_parameters.model": ("llm.invocation_parameters", "model"),
}

# Content columns whose value may be a string attribute taken verbatim (and then "lifted").
CONTENT_RULES: dict[str, tuple[str, ...]] = {
    "system_instructions": ("gen_ai.system_instructions",),
    "input_messages": ("gen_ai.input.messages",),
    "output_messages": ("gen_ai.output.messages",),
    "tool_arguments": ("gen_ai.tool.call.arguments",),
    "tool_result": ("gen_ai.tool.call.result",),
    "documents": ("gen_ai.retrieval.documents",),
}

# Columns a user may map their own attribute names onto in aitrail.toml [mapping].
MAPPABLE = frozenset(SCALAR_RULES) | frozenset(CONTENT_RULES) | {"policy_id", "policy_version",
                                                                 "policy_verdict"}

INT_COLUMNS = frozenset({"input_tokens", "output_tokens"})
BOOL_COLUMNS = frozenset({"review_required"})

# Convention detection (conventions.md 6.1): first match wins.
OPENINFERENCE_MARKER = "openinference.span.kind"
OPENLLMETRY_MARKERS = (
    "traceloop.span.kind", "traceloop.entity.name", "traceloop.workflow.name",
    "llm.request.type", "gen_ai.prompt.0.role", "gen_ai.prompt.0.content",
    "gen_ai.completion.0.role", "gen_ai.completion.0.content", "llm.usage.total_tokens",
    # impl-only names that tell current OpenLLMetry LLM spans from OTel's (conventions.md 6.1
    # rule 3, 3.2); both conventions otherwise share gen_ai.provider.name.
    "gen_ai.usage.total_tokens", "gen_ai.is_streaming",
)
OPENLLMETRY_LEGACY_MARKERS = ("gen_ai.prompt.0.role", "gen_ai.prompt.0.content",
                              "gen_ai.completion.0.role", "gen_ai.completion.0.content",
                              "llm.request.type")

# Operation from each convention's own discriminator.
OPENINFERENCE_OPERATION = {
    "LLM": "chat", "EMBEDDING": "embeddings", "RETRIEVER": "retrieval", "RERANKER": "rerank",
    "TOOL": "execute_tool", "AGENT": "invoke_agent", "CHAIN": "invoke_workflow",
    "GUARDRAIL": "apply_guardrail", "EVALUATOR": "evaluation", "PROMPT": "prompt_render",
    "DECISION": "chat",
}
TRACELOOP_SPAN_KIND_OPERATION = {
    "workflow": "invoke_workflow", "agent": "invoke_agent", "tool": "execute_tool",
}
LLM_REQUEST_TYPE_OPERATION = {
    "chat": "chat", "completion": "text_completion", "embedding": "embeddings",
    "rerank": "rerank",
}
OPERATION_ALIASES = {
    "guardrail.run": "apply_guardrail", "guard": "apply_guardrail",
    "run_guardrail": "apply_guardrail", "vector_db_retrieve": "retrieval",
    "llm_request": "chat",
}

# ai_kind from operation.
OPERATION_AI_KIND = {
    "chat": "llm", "text_completion": "llm", "generate_content": "llm",
    "embeddings": "embedding", "retrieval": "retrieval", "rerank": "rerank",
    "execute_tool": "tool", "invoke_agent": "agent", "create_agent": "agent",
    "invoke_workflow": "agent", "apply_guardrail": "guardrail", "evaluation": "guardrail",
}

# Provider spellings folded onto the OTel provider enum (conventions.md 6.2).
PROVIDER_ALIASES = {
    "azure": "azure.ai.openai", "az.ai.openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference", "aws": "aws.bedrock", "amazon": "aws.bedrock",
    "bedrock": "aws.bedrock", "vertex_ai": "gcp.vertex_ai", "vertexai": "gcp.vertex_ai",
    "gemini": "gcp.gemini", "google": "gcp.gen_ai", "xai": "x_ai", "mistralai": "mistral_ai",
    "mistral": "mistral_ai", "openrouter": "openrouter",
}

# Decision sources: each maps decision fields to attribute keys. A source applies when any
# of its keys is present; its `native_verdict` is folded through VERDICTS into `verdict`.
DECISION_SOURCES: list[dict[str, object]] = [
    {"kind": "policy", "source": "aitrail", "fields": {
        "policy_id": "aitrail.policy.id", "policy_version": "aitrail.policy.version",
        "rule": "aitrail.policy.rule", "native_verdict": "aitrail.policy.verdict",
        "action": "aitrail.policy.action", "reason": "aitrail.policy.reason"}},
    {"kind": "guardrail", "source": "gen_ai.guardrail", "fields": {
        "component": "gen_ai.guardrail.component.name",
        "policy_id": "gen_ai.guardrail.policy.id",
        "policy_version": "gen_ai.guardrail.policy.version",
        "rule": "gen_ai.guardrail.policy.rule.id",
        "stage": "gen_ai.guardrail.source", "native_type": "gen_ai.guardrail.result.type",
        "native_verdict": "gen_ai.guardrail.result.value",
        "reason": "gen_ai.guardrail.result.reason",
        "category": "gen_ai.guardrail.risk.category", "score": "gen_ai.guardrail.risk.score"}},
    {"kind": "guardrail", "source": "gen_ai.guardrail.security", "fields": {
        "policy_id": "gen_ai.guardrail.security.policy.id",
        "rule": "gen_ai.guardrail.security.policy.rule.id",
        "stage": "gen_ai.guardrail.target.type",
        "native_verdict": "gen_ai.guardrail.verdict.type",
        "action": "gen_ai.guardrail.action.type",
        "reason": "gen_ai.guardrail.verdict.reason"}},
    {"kind": "guardrail", "source": "traceloop", "fields": {
        "component": "gen_ai.guardrail.name", "native_verdict": "gen_ai.guardrail.status"}},
    {"kind": "guardrail", "source": "agent.threat.detection", "fields": {
        "rule": "agent.threat.detection.rule_id",
        "policy_id": "agent.threat.detection.ruleset",
        "native_verdict": "agent.threat.detection.action"}},
    {"kind": "review", "source": "aitrail", "fields": {
        "actor": "aitrail.review.reviewer", "native_verdict": "aitrail.review.decision"}},
]

# Native verdict values -> allow | deny | review | modify.
VERDICTS = {
    "allow": "allow", "allowed": "allow", "pass": "allow", "passed": "allow", "none": "allow",
    "ok": "allow", "approved": "allow", "approve": "allow", "warn": "allow",
    "deny": "deny", "denied": "deny", "block": "deny", "blocked": "deny", "failed": "deny",
    "fail": "deny", "reject": "deny", "rejected": "deny", "guardrail_intervened": "deny",
    "intervened": "deny", "tripwire_triggered": "deny",
    "review": "review", "escalate": "review", "ask": "review", "pending": "review",
    "needs_review": "review",
    "modify": "modify", "modified": "modify", "redact": "modify", "mask": "modify",
}
# Most restrictive first: the span's policy_verdict is the first of these it has.
VERDICT_ORDER = ("deny", "review", "modify", "allow")

# Changes recognised from standard namespaces when no aitrail.change.id is set:
# (id attribute, kind, target attributes, id prefix).
CHANGE_FALLBACKS: list[tuple[str, str, tuple[str, ...], str]] = [
    ("vcs.change.id", "pull_request", ("vcs.repository.url.full", "vcs.repository.name"), "vcs"),
    ("deployment.id", "deploy", ("deployment.name", "deployment.environment.name"), "deploy"),
    ("cicd.pipeline.run.id", "pipeline", ("cicd.pipeline.name",), "cicd"),
]

# Feature flag evaluations: current names first, deprecated spellings after.
FLAG_FIELDS = {
    "key": ("feature_flag.key",),
    "variant": ("feature_flag.result.variant", "feature_flag.variant"),
    "value": ("feature_flag.result.value",),
    "reason": ("feature_flag.result.reason", "feature_flag.evaluation.reason"),
    "provider": ("feature_flag.provider.name", "feature_flag.provider_name"),
}
FLAG_EVENT = "feature_flag.evaluation"

# Span-event forms of content (OTel GenAI <= 1.27): event -> (attribute, column, role given to
# a message that names none). A completion is the model's by definition; a bare prompt string
# does not say whose it is.
CONTENT_EVENTS: dict[str, tuple[str, str, str | None]] = {
    "gen_ai.content.prompt": ("gen_ai.prompt", "input_messages", None),
    "gen_ai.content.completion": ("gen_ai.completion", "output_messages", "assistant"),
}
# OpenLLMetry vector-DB result events: event -> attribute prefix (conventions.md 3.5). Their
# spans (`chroma.query`, `pinecone.query`) carry no operation name, so documents found this
# way make the span a retrieval.
DOCUMENT_EVENTS = {"db.query.result": "db.query.result", "db.search.result": "db.search.result"}
DOCUMENT_EVENT_OPERATION = "retrieval"

# Span events that identify the convention when no attribute does.
EVENT_CONVENTIONS = {
    "db.query.result": "openllmetry", "db.search.result": "openllmetry",
    "gen_ai.content.prompt": "otel-genai-legacy", "gen_ai.content.completion": "otel-genai-legacy",
}

# GenAI content carried by log records (conventions.md 1.5). Event name -> (what it carries,
# the role of a message it implies). "details" records carry whole structured lists in their
# attributes; the per-message events carry one message in the body.
LOG_CONTENT_EVENTS: dict[str, tuple[str, str | None]] = {
    "gen_ai.client.inference.operation.details": ("details", None),
    "gen_ai.system.message": ("input", "system"),
    "gen_ai.user.message": ("input", "user"),
    "gen_ai.assistant.message": ("input", "assistant"),
    "gen_ai.tool.message": ("input", "tool"),
    "gen_ai.choice": ("output", "assistant"),
}
