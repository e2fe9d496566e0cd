"""Normalization never raises, whatever type a known attribute arrives with: one bad span
must not sink a batch (the generic columns keep the value anyway)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aitrail.store import mappings as m
from aitrail.store.normalize import Normalizer

KNOWN_KEYS = sorted(
    {k for keys in m.SCALAR_RULES.values() for k in keys}
    | {k for keys in m.CONTENT_RULES.values() for k in keys}
    | {k for src in m.DECISION_SOURCES for k in src["fields"].values()}
    | {k for keys in m.FLAG_FIELDS.values() for k in keys}
    | set(m.OPENLLMETRY_MARKERS) | {m.OPENINFERENCE_MARKER, "traceloop.span.kind",
                                    "input.value", "output.value", "metadata",
                                    "llm.input_messages.0.message.role",
                                    "llm.output_messages.0.message.tool_calls.0.tool_call.id",
                                    "retrieval.documents.0.document.id",
                                    "llm.invocation_parameters", "vcs.change.id",
                                    "deployment.id"})
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(),
              st.text(max_size=20), st.sampled_from(["GUARDRAIL", "LLM", "TOOL", "[1,", "{}",
                                                     '[{"role": 1}]', '{"action": []}'])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=5)
events = st.lists(st.fixed_dictionaries({
    "name": st.sampled_from([*m.CONTENT_EVENTS, *m.DOCUMENT_EVENTS, m.FLAG_EVENT, "exception"]),
    "attributes": st.dictionaries(st.sampled_from(
        ["gen_ai.prompt", "gen_ai.completion", "db.query.result.id", "feature_flag.key",
         "exception.type", "db.query.result.metadata"]), values, max_size=3),
}), max_size=3)


@settings(max_examples=300, deadline=None)
@given(attrs=st.dictionaries(st.sampled_from(KNOWN_KEYS), values, max_size=8),
       resource=st.dictionaries(st.sampled_from(KNOWN_KEYS), values, max_size=3),
       evs=events, status=st.integers(0, 2))
def test_normalize_never_raises_on_odd_value_types(attrs, resource, evs, status):
    out, lifted = Normalizer({"user_id": ["acme.user"]}).normalize(attrs, resource, evs, status)
    assert set(lifted) <= set(attrs)
    for key, col in lifted.items():
        assert out[col] == attrs[key]


def test_a_resource_value_that_wins_does_not_swallow_a_lifted_span_value():
    long_id = "user-with-a-very-long-identifier-0001"
    attrs = {"enduser.id": "", "user.id": long_id}
    out, lifted = Normalizer().normalize(attrs, {"aitrail.user.id": "res-user"}, [], 0)
    assert out["user_id"] == "res-user"
    assert "user.id" not in lifted  # else the span's user.id would read back as res-user


def test_a_verdict_that_cannot_be_folded_still_names_its_policy():
    attrs = {"aitrail.policy.id": "egress", "aitrail.policy.version": "v9",
             "aitrail.policy.verdict": "quarantine"}
    out, _ = Normalizer().normalize(attrs, {}, [], 0)
    assert (out["policy_id"], out["policy_version"]) == ("egress", "v9")
    assert "policy_verdict" not in out  # only allow, deny, review or modify go there
