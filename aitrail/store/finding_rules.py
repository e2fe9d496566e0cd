"""The findings rules (name, severity, the declared field each reads), apart from their SQL
so that `aitrail --help` and offline commands list them without loading DuckDB."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    name: str
    severity: str  # high: the declared control did not hold; medium: drift to look into
    checks: str    # the declaration field it reads
    what: str


RULES: tuple[Rule, ...] = (
    Rule("action_not_allowed", "high", "allowed_actions",
         "a tool call or change whose action is not in allowed_actions"),
    Rule("review_missing", "high", "human_review_required",
         "a change the feature took part in landed with no approving review"),
    Rule("review_rejected", "high", "human_review_required",
         "a change landed although its last review rejected it"),
    Rule("review_after_change", "medium", "human_review_required",
         "the approving review came after the change had landed"),
    Rule("model_not_declared", "medium", "model",
         "a model call to a model other than the declared one(s) or their dated snapshots"),
    Rule("provider_not_declared", "medium", "model_provider",
         "a model or embedding call to another provider than model_provider"),
    Rule("forbidden_input", "high", "forbidden_inputs",
         "a forbidden data class reached the feature (redaction entries, or unmasked text)"),
    Rule("content_unredacted", "high", "logging.prompts",
         "secrets stored unmasked although prompts are declared stored_redacted"),
    Rule("content_stored", "medium", "logging.prompts",
         "prompts or outputs stored although declared not_stored"),
    Rule("retention_exceeded", "medium", "logging.retention_days",
         "spans of the feature kept longer than retention_days"),
    Rule("kill_switch_ignored", "high", "rollback.kill_switch",
         "AI steps ran after the kill-switch flag evaluated off in the same trace"),
    Rule("fallback_missing", "medium", "rollback.fallback",
         "a provider error with neither a successful retry nor the fallback after it"),
    Rule("retrieval_outside_permissions", "high", "retrieval.permission_key",
         "a retrieved document belongs to another scope than the request's"),
    Rule("retrieval_source_not_declared", "medium", "retrieval",
         "a retrieval from another data source than the declared one"),
)
RULE_NAMES = tuple(r.name for r in RULES)
