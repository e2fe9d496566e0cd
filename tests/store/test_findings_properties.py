"""Properties of findings on random traces, each ingested through the real pipeline into a
fresh store: a declaration that allows everything the traces did finds nothing, and taking
one action away finds exactly the spans that used it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .findings_traces import Traces, declare, evaluate

NAMES = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)
ACTION = st.one_of(st.tuples(st.just("tool"), NAMES),
                   st.tuples(st.just("change"), st.tuples(NAMES, NAMES)))
MODEL = st.tuples(st.sampled_from(["openai", "anthropic", "aws.bedrock"]),
                  st.sampled_from(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "nova"]))
SPAN = st.one_of(
    st.tuples(st.just("action"), ACTION),
    st.tuples(st.just("llm"), st.tuples(MODEL, st.booleans())),  # (provider, model), failed
    st.tuples(st.just("flag"), st.sampled_from(["on", "off"])),
    st.tuples(st.just("review"), st.sampled_from(["approved", "rejected", "pending"])),
)
TRACES = st.lists(st.lists(SPAN, min_size=1, max_size=6), min_size=1, max_size=6)
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _build(traces: list[list[tuple]], root: Path) -> dict[str, list[str]]:
    """Ingest the traces; returns each action's span ids, and collects models/providers."""
    t = Traces()
    used: dict[str, list[str]] = {}
    for ti, spans in enumerate(traces):
        for si, (what, value) in enumerate(spans):
            at = ti * 100 + si
            if what == "action":
                kind, name = value
                if kind == "tool":
                    attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
                    action = name
                else:
                    attrs = {"aitrail.change.id": f"c{ti}", "aitrail.change.kind": name[0],
                             "aitrail.change.action": name[1]}
                    action = f"{name[0]}.{name[1]}"
                _, sid = t.span(f"t{ti}", f"s{si}", "step", at, attrs)
                used.setdefault(action, []).append(sid)
            elif what == "llm":
                (provider, model), failed = value
                t.span(f"t{ti}", f"s{si}", "chat", at,
                       {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
                        "gen_ai.request.model": model}, error="503" if failed else None)
            elif what == "flag":
                t.span(f"t{ti}", f"s{si}", "eval", at, {}, events=[
                    (0, "feature_flag.evaluation", {"feature_flag.key": "ai",
                                                    "feature_flag.result.variant": value})])
            else:
                t.span(f"t{ti}", f"s{si}", "review", at, {
                    "aitrail.change.id": f"c{ti}", "aitrail.review.reviewer": "r",
                    "aitrail.review.decision": value}, service="gate")
    t.ingest(root)
    return used


@SETTINGS
@given(TRACES)
def test_a_declaration_that_allows_everything_finds_nothing(traces):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "s"
        _build(traces, root)
        declare(root, "feature: f\nallowed_actions: ['*']\nhuman_review_required: false\n"
                      "model_provider: [openai, anthropic, aws.bedrock]\n"
                      "model: [gpt-4o, gpt-4o-mini, claude-sonnet-4-5, nova]\n"
                      "forbidden_inputs: []\nlogging: {prompts: stored}\n")
        assert evaluate(root, {"svc": "f"}).rows == []


@SETTINGS
@given(TRACES, st.data())
def test_removing_an_allowed_action_finds_every_span_that_used_it(traces, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "s"
        used = _build(traces, root)
        everything = sorted(used)
        declare(root, f"feature: f\nallowed_actions: {everything!r}\n")
        assert evaluate(root, {"svc": "f"}).rows == []
        if not everything:
            return
        gone = data.draw(st.sampled_from(everything))
        declare(root, f"feature: f\nallowed_actions: {[a for a in everything if a != gone]!r}\n",
                effective=None)  # a later version, in force from now
        # every span is judged by the first version (from before it); the new version is in
        # force for spans from now on, so judge by replacing the record instead:
        rows = evaluate(root, {"svc": "f"}, rule="action_not_allowed").rows
        assert rows == []  # the spans happened under the first version
        fresh = Path(tmp) / "fresh"
        _build(traces, fresh)
        declare(fresh, f"feature: f\nallowed_actions: {[a for a in everything if a != gone]!r}\n")
        rows = evaluate(fresh, {"svc": "f"}).rows
        assert sorted(r["span_id"] for r in rows) == sorted(used[gone])
        assert {r["rule"] for r in rows} == {"action_not_allowed"}
        assert all(f"`{gone}`" in r["explanation"] for r in rows)
