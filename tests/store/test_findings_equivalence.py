"""The optimised findings evaluation against a straightforward reference, on random stores
ingested through the real pipeline: the `findings` view (one narrow scan, RE2) and
`findings()` (the scan as Arrow, hyperscan, --feature narrowing the scan) return exactly
the rows of `findings_reference.sql`, the evaluation as first written (an ASOF join per
span, every rule over the linked spans, every secret candidate by RE2)."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aitrail.store.findings import attach_findings, findings
from aitrail.store.query import Store
from aitrail.store.redaction import RedactionPolicy
from aitrail.store.secret_shapes import CANDIDATES, candidate_pattern, candidate_rows

from .findings_traces import BEFORE, GOLDEN_NOW, T0, Traces, declare

REFERENCE = (Path(__file__).parent / "findings_reference.sql").read_text().replace(
    "CREATE OR REPLACE VIEW findings AS", "CREATE OR REPLACE VIEW findings_reference AS")
FEATURES = {"svc_a": "fa", "svc_b": "fb"}
SERVICE = st.sampled_from(["svc_a", "svc_b", "other"])
FEATURE_ATTR = st.sampled_from([None, None, "fa", "fb", "undeclared"])
CHANGE = st.sampled_from([None, "c0", "c1", "c2"])
# Secret shapes, masked or not depending on the ingest, their near misses, and plain text.
TEXTS = [
    "plain words", "token ghp_" + "A1b2C3d4E5" * 3 + "F6g7H8", "AKIAIOSFODNN7EXAMPLE",
    "key AKIA" + "Q" * 16, "postgres://app:hunter22@db:5432/x", "sk-short", "://nope",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "xoxb-1234567890-abc", "sk-" + "a1B2" * 8, "glpat-" + "x" * 20]
TEXT = st.sampled_from(TEXTS)
SPAN = st.one_of(
    st.tuples(st.just("tool"), st.sampled_from(["draft_text", "post", "run_shell"]), CHANGE,
              st.one_of(st.none(), TEXT)),
    st.tuples(st.just("change"), st.sampled_from(["ticket", "message"]),
              st.sampled_from(["update", "send"]), CHANGE),
    st.tuples(st.just("review"), CHANGE, st.sampled_from(["approved", "rejected", "pending"])),
    st.tuples(st.just("llm"), st.sampled_from(["openai", "anthropic"]),
              st.sampled_from(["gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-mini", "claude-x"]),
              st.booleans(), st.one_of(st.none(), TEXT)),
    st.tuples(st.just("retrieval"), st.sampled_from(["kb", "wiki"]),
              st.sampled_from([None, "cus_1", "cus_2"]),
              st.lists(st.sampled_from(["cus_1", "cus_2", None]), max_size=3)),
    st.tuples(st.just("flag"), st.sampled_from(["on", "off"])),
    st.tuples(st.just("fallback"), st.booleans()),
)
TRACE = st.tuples(st.booleans(),  # ingested with redaction off
                  st.lists(st.tuples(SPAN, SERVICE, FEATURE_ATTR), min_size=1, max_size=7))
# Each field is left out (None: not checked) now and then.
DECLARATION = st.fixed_dictionaries({k: st.sampled_from([None, *values]) for k, values in {
    "model_provider": ["openai", "[openai, anthropic]"],
    "model": ["gpt-4o", "[gpt-4o, claude-x]"],
    "retrieval": ["kb", "{source: kb, permission_key: customer_id}",
                  "{permission_key: customer_id}"],
    "human_review_required": ["true", "false"],
    "allowed_actions": ["[]", "['*']", "[draft_text, 'ticket.*']", "[post]"],
    "forbidden_inputs": ["[credentials]", "[cloud_key, jwt]", "[]"],
    "logging": ["{prompts: stored_redacted}", "{prompts: not_stored}",
                "{prompts: stored_redacted, retention_days: 7}",
                "{prompts: stored, retention_days: 30}"],
    "rollback": ["{kill_switch: ai_on}", "{fallback: canned_reply}",
                 "{kill_switch: ai_on, fallback: canned_reply}"],
}.items()})
# Each feature: its versions, each in force from some seconds after T0 (None: from BEFORE).
VERSIONS = st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 700)), DECLARATION),
                    min_size=1, max_size=2, unique_by=lambda v: v[0])


def _attrs(span: tuple, feature: str | None) -> tuple[str, dict[str, Any], str | None, list]:
    """(name, attributes, error, events) of one generated span."""
    kind, *v = span
    attrs: dict[str, Any] = {"aitrail.feature": feature} if feature else {}
    if kind == "tool":
        name, cid, args = v
        attrs |= {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        if cid:
            attrs |= {"aitrail.change.id": cid, "aitrail.change.kind": "ticket",
                      "aitrail.change.action": "update"}
        if args:
            attrs["gen_ai.tool.call.arguments"] = f'{{"text": "{args}"}}'.replace("\n", " ")
        return f"execute_tool {name}", attrs, None, []
    if kind == "change":
        ckind, action, cid = v
        attrs |= {"aitrail.change.id": cid or "c9", "aitrail.change.kind": ckind,
                  "aitrail.change.action": action}
        return f"{ckind} {action}", attrs, None, []
    if kind == "review":
        cid, decision = v
        attrs |= {"aitrail.change.id": cid or "c9", "aitrail.review.reviewer": "ana",
                  "aitrail.review.decision": decision}
        return "review", attrs, None, []
    if kind == "llm":
        provider, model, failed, text = v
        attrs |= {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                  "gen_ai.request.model": model}
        if text:
            attrs["gen_ai.input.messages"] = (
                '[{"role":"user","parts":[{"type":"text","content":"'
                + text.replace("\n", "\\n") + '"}]}]')
        return "chat", attrs, "503" if failed else None, []
    if kind == "retrieval":
        source, scope, owners = v
        attrs |= {"openinference.span.kind": "RETRIEVER", "gen_ai.data_source.id": source}
        if scope:
            attrs["metadata"] = f'{{"customer_id": "{scope}"}}'
        for i, owner in enumerate(owners):
            attrs[f"retrieval.documents.{i}.document.id"] = f"doc{i}"
            attrs[f"retrieval.documents.{i}.document.metadata"] = (
                f'{{"customer_id": "{owner}"}}' if owner else "{}")
        return "retrieve", attrs, None, []
    if kind == "flag":
        return "eval", attrs, None, [(0, "feature_flag.evaluation", {
            "feature_flag.key": "ai_on", "feature_flag.result.variant": v[0]})]
    by_name = v[0]
    return ("canned_reply" if by_name else "reply", attrs
            | ({} if by_name else {"aitrail.fallback": "canned_reply"}), None, [])


def _build(root: Path, traces: list, versions: dict[str, list]) -> None:
    """Ingest the traces (every span at its own start time: evidence order is then
    defined), then declare each feature's versions in order."""
    plain, unredacted = Traces(), Traces()
    at = 0
    for ti, (redaction_off, spans) in enumerate(traces):
        for si, (span, service, feature) in enumerate(spans):
            name, attrs, error, events = _attrs(span, feature)
            (unredacted if redaction_off else plain).span(
                f"t{ti}", f"s{si}", name, at, attrs, service=service, error=error,
                events=events)
            at += 1
    if plain.spans:
        plain.ingest(root)
    if unredacted.spans:
        unredacted.ingest(root, redaction=RedactionPolicy.from_config(
            {"redaction": {"classes": []}}))
    start = datetime.fromtimestamp(T0 / 1e9, UTC)
    for feature, vs in versions.items():
        for offset, fields in sorted(vs, key=lambda x: -1 if x[0] is None else x[0]):
            text = f"feature: {feature}\n" + "".join(f"{k}: {v}\n" for k, v in fields.items()
                                                      if v is not None)
            declare(root, text, BEFORE if offset is None else start + timedelta(seconds=offset))


def _equal_to_reference(root: Path) -> list[dict[str, Any]]:
    """The reference's rows, after checking the view and findings() return exactly them."""
    with Store(root) as store:
        attach_findings(store, FEATURES, GOLDEN_NOW)
        store.con.execute(REFERENCE)
        reference = _rows(store, "SELECT * FROM findings_reference")
        attach_findings(store, FEATURES, GOLDEN_NOW)  # our macros again
        assert _rows(store, "SELECT * FROM findings") == reference
        assert sorted(findings(store).rows, key=_key) == reference
        for feature in ("fa", "fb"):
            assert sorted(findings(store, feature=feature).rows, key=_key) == [
                r for r in reference if r["feature"] == feature]
    return reference


def _key(r: dict[str, Any]) -> tuple:
    return (r["rule"], r["feature"], r["tenant"], r["trace_id"], r["span_id"],
            r["change_id"] or "")


def _rows(store: Store, sql: str) -> list[dict[str, Any]]:
    return sorted(store._fetch(sql).rows, key=_key)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TRACE, min_size=1, max_size=5),
       st.fixed_dictionaries({"fa": VERSIONS, "fb": VERSIONS}))
def test_optimised_findings_equal_the_reference_evaluation(traces, versions):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "s"
        _build(root, traces, versions)
        for rule in {r["rule"] for r in _equal_to_reference(root)}:
            event(rule)  # --hypothesis-show-statistics: how often each rule is exercised


@pytest.mark.parametrize("text", TEXTS)
def test_each_secret_shape_and_near_miss_is_found_as_the_reference_finds_it(text, tmp_path):
    spans = [(("llm", "openai", "gpt-4o", False, text), "svc_a", None),
             (("tool", "post", None, text), "svc_b", None)]
    _build(tmp_path / "s", [(True, spans), (False, spans)], {
        "fa": [(None, {"forbidden_inputs": "[credentials]"})],
        "fb": [(None, {"logging": "{prompts: stored_redacted}"})]})
    found = _equal_to_reference(tmp_path / "s")
    assert bool(found) == (text not in ("plain words", "AKIAIOSFODNN7EXAMPLE", "sk-short",
                                        "://nope"))


def test_the_sql_candidates_are_the_hyperscan_candidates():
    assert candidate_pattern() == "|".join(CANDIDATES)
    sql = (Path(__file__).parents[2] / "aitrail" / "store" / "sql" / "findings.sql").read_text()
    assert "'{secret_candidates}'" in sql


def test_a_candidate_counts_only_within_one_value():
    import pyarrow as pa

    # "AK" + "IA": the literal lies across two values, as they sit end to end in the buffer
    values = pa.array(["xx AK", "IA yy", None, "a ghp_ b", "", "sk-"]).slice(1)
    assert candidate_rows(values) == {2, 4}
    assert candidate_rows(pa.array(["AK", "IA"])) == set()
