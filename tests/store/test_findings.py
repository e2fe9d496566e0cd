"""Findings: golden findings per sample incident, and each rule on traces made for it, all
through the real pipeline (Parquet, DuckDB) and the recorded declarations."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aitrail.store.config import load_config
from aitrail.store.findings import RULE_NAMES, attach_findings
from aitrail.store.query import Store
from aitrail.store.redaction import RedactionPolicy

from .findings_traces import (
    BEFORE,
    GOLDEN_NOW,
    SAMPLE_FEATURES,
    SAMPLES,
    T0,
    Traces,
    declare,
    evaluate,
    sample_store_with_declarations,
)

ONCALL = "cfc8fb4f69a296af60b7ed66cdeecb05"
LEAK, OTHER_REPLY = "a037a304a4cae490e5bc07c64abe83a5", "1f7e15504f42cad38214d302ff8a398b"
PASTED = "8abf1be607fd62eab682a322d9753f4c"

# What a reviewer names for each incident, judged the day after the last one
# (rule, trace_id, span_id, change_id). 02, 05 and 06 did what their teams declared: the
# migration was reviewed before it merged (its failure was a bad review, not a broken
# control), the exfil attempt was blocked before any tool ran, and after the provider
# outage every failed call fell back to a template and the kill switch held.
GOLDEN: dict[str, set[tuple[str, str, str, str | None]]] = {
    "01-support-reply-cross-customer": {
        # the retriever returned another customer's ticket to both replies
        ("retrieval_outside_permissions", LEAK, "9431cd1398d894f6", "chg-support-reply-88231"),
        ("retrieval_outside_permissions", OTHER_REPLY, "0fed417262136648",
         "chg-support-reply-88305"),
        # declared as drafting for an agent; it posted public replies itself, unreviewed
        ("action_not_allowed", LEAK, "61728bf74ca5aeeb", "chg-support-reply-88231"),
        ("action_not_allowed", OTHER_REPLY, "749ff352b298c030", "chg-support-reply-88305"),
        ("review_missing", LEAK, "61728bf74ca5aeeb", "chg-support-reply-88231"),
        ("review_missing", OTHER_REPLY, "749ff352b298c030", "chg-support-reply-88305"),
    },
    "02-migration-pr-table-lock": set(),
    "03-oncall-kubectl-after-review-verdict": {
        # the restart ran (exec kubectl) although the policy said review: no review exists
        ("review_missing", ONCALL, "a901aee4b0caea02", "chg-oncall-restart-payments-1107"),
    },
    "04-pasted-credential-in-prompt": {
        # the pasted password and connection string reached the bot, the model and Slack
        ("forbidden_input", PASTED, "3cb1965277d461a5", "chg-devhelper-reply-5531"),
        # and the transcripts outlive the declared week
        ("retention_exceeded", PASTED, "3cb1965277d461a5", None),
    },
    "05-poisoned-wiki-exfil-blocked": set(),
    "06-provider-outage-fallback-killswitch": set(),
}


@pytest.fixture(scope="module")
def declared(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_store_with_declarations(sample_store, tmp_path_factory.mktemp("d") / "s")


@pytest.fixture(scope="module")
def golden_rows(declared: Path) -> list[dict]:
    return evaluate(declared, SAMPLE_FEATURES).rows


def _feature_of(folder: str) -> str:
    text = (SAMPLES / folder / "ai_change.yaml").read_text()
    return next(line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith("feature:"))


@pytest.mark.parametrize("folder", sorted(GOLDEN))
def test_each_sample_incident_yields_exactly_the_findings_a_reviewer_names(
        golden_rows, folder):
    feature = _feature_of(folder)
    got = {(r["rule"], r["trace_id"], r["span_id"], r["change_id"])
           for r in golden_rows if r["feature"] == feature}
    assert got == GOLDEN[folder]


def test_golden_findings_carry_version_severity_evidence_and_what_to_do(golden_rows, declared):
    assert len(golden_rows) == sum(len(v) for v in GOLDEN.values())
    with_versions = evaluate(declared, SAMPLE_FEATURES, rule="review_missing").rows
    assert {r["version"] for r in with_versions} and all(
        len(r["version"]) == 12 and r["in_force"] for r in with_versions)
    for r in golden_rows:
        assert r["severity"] in ("high", "medium")
        assert r["evidence"][0] == {"trace_id": r["trace_id"], "span_id": r["span_id"]}
        assert r["evidence_count"] >= len(r["evidence"]) >= 1
        assert ": " in r["explanation"] and "\n" not in r["explanation"]
    pasted = next(r for r in golden_rows if r["rule"] == "forbidden_input")
    assert pasted["evidence_count"] == 3  # workflow input, model prompt, the Slack post
    assert "connection_string, password" in pasted["explanation"]


def test_sample_config_maps_every_sample_service_to_its_declared_feature():
    config = load_config(SAMPLES / "aitrail.toml")
    assert config.features == SAMPLE_FEATURES
    assert set(SAMPLE_FEATURES.values()) == {_feature_of(f) for f in GOLDEN}


def test_without_a_service_map_or_feature_attribute_no_span_belongs_to_a_feature(declared):
    assert evaluate(declared).rows == []


def test_filters_by_time_feature_and_rule(declared):
    rows = evaluate(declared, SAMPLE_FEATURES,
                    since=datetime(2026, 11, 5, tzinfo=UTC)).rows
    assert {r["feature"] for r in rows} == {"oncall-assistant", "devhelper-answers"}
    only = evaluate(declared, SAMPLE_FEATURES, feature="oncall-assistant").rows
    assert [r["rule"] for r in only] == ["review_missing"]
    limited = evaluate(declared, SAMPLE_FEATURES, limit=2)
    assert len(limited.rows) == 2 and limited.truncated


def test_retention_is_judged_at_the_given_time(declared):
    early = evaluate(declared, SAMPLE_FEATURES, now=datetime(2026, 11, 15, tzinfo=UTC))
    assert "retention_exceeded" not in {r["rule"] for r in early.rows}
    late = evaluate(declared, SAMPLE_FEATURES, now=datetime(2026, 12, 22, tzinfo=UTC))
    kept = {r["feature"] for r in late.rows if r["rule"] == "retention_exceeded"}
    assert kept == {"devhelper-answers", "support-agent-suggested-replies",
                    "research-assistant", "support-reply-drafts"}  # not 90 or 365 days


# -- each rule on traces made for it -------------------------------------------------------

FULL = """
feature: drafts
model_provider: openai
model: gpt-4o
human_review_required: true
allowed_actions: [draft_text, "ticket.*"]
forbidden_inputs: [credentials]
logging: {prompts: stored_redacted, retention_days: 30}
rollback: {kill_switch: ai_on, fallback: canned_reply}
"""


def _llm(model: str = "gpt-4o", provider: str = "openai", **more: object) -> dict:
    return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
            "gen_ai.request.model": model, **more}


def _change(cid: str, kind: str, action: str) -> dict:
    return {"aitrail.change.id": cid, "aitrail.change.kind": kind,
            "aitrail.change.action": action}


def _review(cid: str, decision: str) -> dict:
    return {"aitrail.change.id": cid, "aitrail.review.reviewer": "ana@example.com",
            "aitrail.review.decision": decision}


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _rules(root: Path, **kw: object) -> list[tuple[str, str]]:
    return sorted((r["rule"], r["span_id"]) for r in evaluate(
        root, {"svc": "drafts"}, **kw).rows)


def test_a_span_joins_a_feature_by_its_aitrail_feature_attribute(root):
    t = Traces()
    _, s = t.span("a", "tool", "execute_tool wipe", 0,
                  {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "wipe",
                   "aitrail.feature": "drafts"}, service="elsewhere")
    t.span("a", "tool2", "execute_tool wipe", 1,
           {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "wipe"},
           service="unmapped")
    t.ingest(root)
    declare(root, FULL)
    assert _rules(root) == [("action_not_allowed", s)]


def test_actions_are_tool_names_and_change_kind_dot_action_with_globs(root):
    t = Traces()
    _, bad = t.span("a", "t1", "execute_tool post", 0,
                    {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "post"})
    t.span("a", "t2", "execute_tool draft", 1,
           {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "draft_text"})
    t.span("a", "c1", "update ticket", 2, _change("c-1", "ticket", "update"))
    _, msg = t.span("a", "c2", "send message", 3, _change("c-2", "message", "send"))
    t.ingest(root)
    declare(root, FULL.replace("human_review_required: true", "human_review_required: false"))
    assert _rules(root) == sorted([("action_not_allowed", bad), ("action_not_allowed", msg)])


def test_review_missing_rejected_and_late_each_name_the_change(root):
    t = Traces()
    _, none = t.span("a", "c", "send", 0, _change("c-none", "ticket", "update"))
    _, rej = t.span("b", "c", "send", 5, _change("c-rej", "ticket", "update"))
    t.span("b", "r", "review", 1, _review("c-rej", "rejected"), service="gate")
    _, late = t.span("c", "c", "send", 0, _change("c-late", "ticket", "update"))
    t.span("c", "r", "review", 30, _review("c-late", "approved"), service="gate")
    t.span("d", "c", "send", 9, _change("c-ok", "ticket", "update"))
    t.span("d", "r", "review", 1, _review("c-ok", "approved"), service="gate")
    t.span("e", "c", "send", 9, _change("c-re", "ticket", "update"))
    t.span("e", "r1", "review", 1, _review("c-re", "rejected"), service="gate")
    t.span("e", "r2", "review", 2, _review("c-re", "approved"), service="gate")
    t.ingest(root)
    declare(root, FULL)
    rows = evaluate(root, {"svc": "drafts"}).rows
    got = {(r["rule"], r["change_id"], r["span_id"]) for r in rows}
    assert got == {("review_missing", "c-none", none), ("review_rejected", "c-rej", rej),
                   ("review_after_change", "c-late", late)}
    late_row = next(r for r in rows if r["change_id"] == "c-late")
    assert late_row["evidence_count"] == 2 and "30.0 s before" in late_row["explanation"]


def test_model_and_provider_other_than_declared(root):
    t = Traces()
    t.span("a", "ok", "chat", 0, _llm(**{"gen_ai.response.model": "gpt-4o-2024-08-06"}))
    _, mini = t.span("a", "mini", "chat", 1, _llm("gpt-4o-mini"))
    _, served = t.span("a", "served", "chat", 2,
                       _llm(**{"gen_ai.response.model": "gpt-4.1-2025-04-14"}))
    _, other = t.span("a", "prov", "chat", 3, _llm(provider="anthropic"))
    t.ingest(root)
    declare(root, FULL)
    assert _rules(root) == sorted([("model_not_declared", mini),
                                   ("model_not_declared", served),
                                   ("provider_not_declared", other)])


def test_kill_switch_off_then_ai_steps_in_the_same_trace(root):
    off = {"feature_flag.key": "ai_on", "feature_flag.result.variant": "off"}
    on = {"feature_flag.key": "ai_on", "feature_flag.result.variant": "on"}
    t = Traces()
    _, ev = t.span("a", "root", "POST /draft", 0, {}, events=[(0, "feature_flag.evaluation",
                                                                off)])
    _, call = t.span("a", "llm", "chat", 1, _llm())
    t.span("b", "root", "POST /draft", 0, {}, events=[(0, "feature_flag.evaluation", on)])
    t.span("b", "llm", "chat", 1, _llm())
    t.span("c", "root", "POST /draft", 0, {}, events=[(0, "feature_flag.evaluation", off)])
    t.span("c", "fallback", "canned_reply", 1, {})
    t.ingest(root)
    declare(root, FULL)
    rows = [r for r in evaluate(root, {"svc": "drafts"}).rows]
    assert [(r["rule"], r["span_id"]) for r in rows] == [("kill_switch_ignored", call)]
    assert [e["span_id"] for e in rows[0]["evidence"]] == [ev, call]


def test_provider_error_needs_a_retry_or_the_declared_fallback_after_it(root):
    t = Traces()
    _, lost = t.span("a", "e", "chat", 0, _llm(), error="503")
    t.span("a", "other", "some_other_fallback", 1, {})
    t.span("b", "e", "chat", 0, _llm(), error="503")
    t.span("b", "retry", "chat", 1, _llm())
    t.span("c", "e", "chat", 0, _llm(), error="timeout")
    t.span("c", "fb", "reply", 1, {"aitrail.fallback": "canned_reply"})
    t.span("d", "fb", "canned_reply", 0, {})  # a fallback before the error does not count
    _, early = t.span("d", "e", "chat", 1, _llm(), error="503")
    t.ingest(root)
    declare(root, FULL)
    assert _rules(root) == sorted([("fallback_missing", lost), ("fallback_missing", early)])


def test_secrets_stored_unmasked_when_redaction_was_off(root):
    t = Traces()
    key = "ghp_" + "A1b2C3d4E5" * 3 + "F6g7H8"
    _, leaked = t.span("a", "llm", "chat", 0, _llm(**{
        "gen_ai.input.messages": f'[{{"role":"user","parts":[{{"type":"text",'
                                 f'"content":"token {key} and AKIAIOSFODNN7EXAMPLE"}}]}}]'}))
    t.span("b", "llm", "chat", 0, _llm(**{"gen_ai.input.messages": "[]"}))
    t.ingest(root, redaction=RedactionPolicy.from_config({"redaction": {"classes": []}}))
    declare(root, FULL)
    assert _rules(root) == [("content_unredacted", leaked), ("forbidden_input", leaked)]
    row = evaluate(root, {"svc": "drafts"}, rule="content_unredacted").rows[0]
    assert row["explanation"].startswith("vcs_token stored unmasked")


def test_content_stored_when_declared_not_stored(root):
    t = Traces()
    _, kept = t.span("a", "llm", "chat", 0, _llm(**{"gen_ai.input.messages": "[]"}))
    t.span("b", "llm", "chat", 0, _llm())
    t.ingest(root)
    declare(root, FULL.replace("stored_redacted", "not_stored"))
    assert _rules(root) == [("content_stored", kept)]


def test_each_finding_names_the_version_in_force_when_its_span_happened(root):
    t = Traces()
    post = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "post"}
    _, first = t.span("a", "t", "execute_tool post", 0, post)
    _, second = t.span("b", "t", "execute_tool post", 3600, post)
    t.ingest(root)
    start = datetime.fromtimestamp(T0 / 1e9, UTC)
    v1 = declare(root, "feature: drafts\nallowed_actions: [draft_text]\n",
                 effective=start - timedelta(hours=1))
    v2 = declare(root, "feature: drafts\nallowed_actions: [draft_text, other]\n",
                 effective=start + timedelta(minutes=30))
    assert v1 != v2
    rows = {r["span_id"]: r for r in evaluate(root, {"svc": "drafts"}).rows}
    assert (rows[first]["version"], rows[first]["in_force"]) == (v1, True)
    assert (rows[second]["version"], rows[second]["in_force"]) == (v2, True)
    assert "allowed: draft_text, other" in rows[second]["explanation"]


def test_a_first_declaration_recorded_after_the_spans_still_judges_them(root):
    t = Traces()
    _, s = t.span("a", "t", "execute_tool post", 0,
                  {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "post"})
    t.ingest(root)
    v = declare(root, "feature: drafts\nallowed_actions: []\n", effective=None)  # now
    [row] = evaluate(root, {"svc": "drafts"}).rows
    assert (row["span_id"], row["version"], row["in_force"]) == (s, v, False)


def test_a_declaration_stating_nothing_finds_nothing(declared, tmp_path):
    root = tmp_path / "bare"
    shutil.copytree(declared, root)
    for feature in SAMPLE_FEATURES.values():
        declare(root, f"feature: {feature}\n", effective=BEFORE + timedelta(days=1))
    assert evaluate(root, SAMPLE_FEATURES).rows == []


def test_every_rule_is_documented():
    doc = (SAMPLES.parent / "docs" / "declarations.md").read_text()
    for rule in RULE_NAMES:
        assert f"`{rule}`" in doc, f"docs/declarations.md does not explain {rule}"


DOC_SQL = re.findall(r"```sql\n(.*?)```",
                     (SAMPLES.parent / "docs" / "declarations.md").read_text(), re.S)


@pytest.mark.parametrize("query", DOC_SQL, ids=[f"query{i}" for i in range(len(DOC_SQL))])
def test_every_query_in_the_declarations_doc_answers_on_the_samples(declared, query):
    with Store(declared) as st:
        attach_findings(st, SAMPLE_FEATURES, GOLDEN_NOW)
        assert st.sql(query).rows, f"no rows for:\n{query}"
