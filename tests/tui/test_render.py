"""Every span and every replay step of the samples renders, whatever its dialect."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitrail.store.pivots import pivots_of
from aitrail.store.query import Store
from aitrail.store.replay import build_steps
from aitrail.tui import marks
from aitrail.tui.aicall import raw_text, span_text
from aitrail.tui.replay_view import step_detail, step_line


@pytest.fixture(scope="module")
def rows(sample_store):
    with Store(sample_store) as s:
        return s.sql("select * from spans", limit=None).rows


def test_every_sample_span_renders_as_an_ai_call_and_raw(rows):
    assert len(rows) == 108
    for r in rows:
        text = span_text(r, 80).plain
        assert r["name"] in text and r["span_id"] in text
        # wrapped to the width with an indent (a terminal would wrap to column 0); URLs
        # stay whole so they can be copied
        assert [line for line in text.splitlines()
                if len(line) > 80 and "://" not in line] == []
        assert "attributes" in raw_text(r).plain or not r["attributes"]
        pivots_of(r)
    verdicts = [r for r in rows if r["policy_verdict"] in ("deny", "review")]
    assert verdicts and all(marks.span_mark(r)[0] == "⚑" for r in verdicts
                            if r["status_code"] != "error")


def test_the_gap_between_verdict_and_enforcement_is_called_out(rows):
    oncall = [r for r in rows if r["policy_id"] == "prod-commands"
              and r["policy_verdict"] == "review"]
    assert oncall
    assert "GAP: verdict not enforced" in span_text(oncall[0]).plain


def test_every_change_replays_into_lines_and_details(rows):
    changes = {r["change_id"] for r in rows if r["change_id"]}
    assert len(changes) == 7
    for change in changes:
        traces = {r["trace_id"] for r in rows if r["change_id"] == change}
        steps = build_steps([r for r in rows if r["trace_id"] in traces])
        assert steps
        for s in steps:
            assert s.title in step_line(s, 1).plain
            assert f"step {s.index}:" in step_detail(s, 1, len(traces), 80).plain


junk = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.lists(st.text(max_size=5)),
                 st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))


@given(st.fixed_dictionaries({}, optional={
    c: junk for c in ("system_instructions", "input_messages", "output_messages",
                      "documents", "decisions", "tool_arguments", "tool_result",
                      "attributes")}))
def test_span_view_survives_malformed_content_columns(extra):
    from datetime import UTC, datetime

    row = {"name": "x", "span_id": "0" * 16, "trace_id": "0" * 32, "service_name": "s",
           "start_time": datetime(2026, 11, 1, tzinfo=UTC), "duration_ms": 1.0,
           "status_code": "unset", "ai_kind": "llm",
           **{k: (v if v is None or isinstance(v, str) else str(v)) for k, v in extra.items()}}
    assert "x" in span_text(row).plain
    raw_text(row)
    pivots_of(row)
