"""The responder's flows, driven with the keyboard through Textual's Pilot on the samples."""

from __future__ import annotations

import pytest

from aitrail.store.workspace import Workspace
from aitrail.tui import replay_view, search
from aitrail.tui.aicall import SpanScreen
from aitrail.tui.app import make_app
from aitrail.tui.incidents import IncidentsScreen
from aitrail.tui.pivot import PivotScreen
from aitrail.tui.replay_view import ReplayScreen
from aitrail.tui.search import SearchScreen
from aitrail.tui.sql_console import SqlScreen
from aitrail.tui.trace import TraceScreen
from aitrail.tui.widgets import WaterfallView

from .conftest import press, screen_text, settle, type_text, wait_until

SUPPORT_TRACE = "a037a304a4cae490e5bc07c64abe83a5"
RETRIEVAL_SPAN = "9431cd1398d894f6"
MIGRATION = "chg-billing-migration-4821"

pytestmark = pytest.mark.anyio


async def test_search_to_trace_to_ai_call_to_pivot_finds_the_other_reply_that_saw_the_ticket(
        store):
    app = make_app(store, user="resp-a")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, SearchScreen)
        assert "17 traces (no filters)" in screen_text(app)
        await press(pilot, "slash")
        await type_text(pilot, "service:support-agent verdict:allow")
        await press(pilot, "enter")
        text = screen_text(app)
        assert "2 traces (service=support-agent, verdict=allow)" in text
        # the older trace is the leak of incident 01
        await press(pilot, "j", "enter")
        assert isinstance(app.screen, TraceScreen)
        assert app.screen.trace_id == SUPPORT_TRACE
        view = app.screen.query_one(WaterfallView)
        assert len(view.shown) == 8
        assert view.select_span(RETRIEVAL_SPAN)
        await press(pilot, "enter")
        assert isinstance(app.screen, SpanScreen)
        text = screen_text(app)
        assert "retrieved documents" in text
        assert "zendesk:ticket/77120" in text
        # first pivot offered is the first retrieved document: the other customer's ticket
        await press(pilot, "v")
        await press(pilot, "enter")
        assert isinstance(app.screen, PivotScreen)
        assert app.screen.pivot.value == "zendesk:ticket/77120"
        text = screen_text(app)
        assert "2 spans in 2 traces share document zendesk:ticket/77120" in text
        traces = {r["trace_id"] for r in app.screen.rows}
        assert traces == {SUPPORT_TRACE, "1f7e15504f42cad38214d302ff8a398b"}
        users = {r["user_id"] for r in app.screen.rows}
        assert len(users) == 2 and None not in users
        # Enter on a pivot row opens that trace at that span
        await press(pilot, "G", "enter")
        assert isinstance(app.screen, TraceScreen)
        assert app.screen.query_one(WaterfallView).current["span_id"] in {
            r["span_id"] for r in app.screen.rows}
    log = Workspace(store).access_log().rows
    assert [(r["action"], r["user"], r["span_id"]) for r in log] == [
        ("open_ai_call", "resp-a", RETRIEVAL_SPAN)]


async def test_model_call_view_shows_messages_tool_calls_tokens_and_raw_attributes(store):
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open(TraceScreen("9fdcbd1e1b8de4148708ee9a67882717"))
        await settle(pilot)
        view = app.screen.query_one(WaterfallView)
        llm = next(n.row for n in view.nodes if n.row["ai_kind"] == "llm")
        view.select_span(llm["span_id"])
        await press(pilot, "enter")
        body = str(app.screen.query_one("#body").render())
        assert "system instructions" in body
        assert "input messages" in body and "user" in body
        assert "→ tool call" in body
        assert "tokens" in body and " in / " in body
        assert "claude-sonnet-4-5" in body
        await press(pilot, "r")
        raw = str(app.screen.query_one("#body").render())
        assert "gen_ai.request.model" in raw
        await press(pilot, "r")
        assert "input messages" in str(app.screen.query_one("#body").render())


async def test_search_says_when_results_are_truncated_and_loads_more(store, monkeypatch):
    monkeypatch.setattr(search, "PAGE", 5)
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "5 traces shown (no filters) · more results — truncated" in screen_text(app)
        assert len(app.screen.rows) == 5
        await press(pilot, "m")
        assert len(app.screen.rows) == 10
        await press(pilot, "m", "m", "m")
        assert len(app.screen.rows) == 17
        assert "truncated" not in screen_text(app)


async def test_choosing_a_facet_value_adds_it_as_a_filter(store):
    app = make_app(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        facets = app.screen.query_one("#facets")
        assert facets.display
        index = next(i for i, o in enumerate(facets.options)
                     if o.id == "service\x00reply-drafter")
        facets.focus()
        facets.highlighted = index
        await press(pilot, "enter")
        assert app.screen.query_one("#filter").value == "service:reply-drafter"
        assert "6 traces (service=reply-drafter)" in screen_text(app)


async def test_free_text_and_time_filters_and_a_bad_filter_is_reported_inline(store):
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "slash")
        await type_text(pilot, 'since:2026-11-10 until:2026-11-11 "CREATE INDEX CONCURRENTLY"')
        await press(pilot, "enter")
        assert [r["trace_id"] for r in app.screen.rows] == ["9fdcbd1e1b8de4148708ee9a67882717"]
        await press(pilot, "slash", "ctrl+u")
        await type_text(pilot, "since:yesterday")
        await press(pilot, "enter")
        assert "filter error: 'yesterday' is neither ISO time" in screen_text(app)


async def test_replay_of_the_migration_steps_to_the_escalated_policy_and_danas_approval(store):
    app = make_app(store, user="resp-b")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open(ReplayScreen(change_id=MIGRATION))
        await settle(pilot)
        screen = app.screen
        assert "across 3 trace(s)" in screen_text(app)
        labels = [s.label for s in screen.steps]
        policy_at = labels.index("POLICY")
        for _ in range(policy_at):
            await press(pilot, "n")
        assert screen.at == policy_at
        detail = screen_text(app)
        assert "db-migrations v3: verdict review, enforced escalate" in detail
        assert "POLICY    [review→escalate] policy.check db-migra" in detail
        review_at = labels.index("REVIEW")
        for _ in range(review_at - policy_at):
            await press(pilot, "j")
        assert "dana@acme.example: approved" in screen_text(app)
        assert "trace 2 of 3" in screen_text(app)
        await press(pilot, "p")
        assert screen.at == review_at - 1
        # the failed deploy is the last step with an error
        await press(pilot, "G")
        assert screen.steps[screen.at].error == "canceling statement due to lock timeout"
        await press(pilot, "v")  # pivot from the failing step: its change, service, ...
        assert type(app.screen).__name__ == "PivotPicker"
        await press(pilot, "escape", "o")
        assert isinstance(app.screen, SpanScreen)
    log = Workspace(store).access_log().rows
    assert ("open_replay", f"change {MIGRATION}", "resp-b") in [
        (r["action"], r["target"], r["user"]) for r in log]


async def test_replay_play_mode_advances_and_shows_the_real_time_gap(store, monkeypatch):
    monkeypatch.setattr(replay_view, "MAX_WAIT_S", 0.1)
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open(ReplayScreen(change_id=MIGRATION))
        await settle(pilot)
        screen = app.screen
        await pilot.press("space")
        assert screen.playing
        assert "playing" in screen_text(app) and "real gap" in screen_text(app)
        await wait_until(pilot, lambda: screen.at >= 3, "three steps played")
        await pilot.press("space")
        assert not screen.playing
        stopped = screen.at
        assert "paused" in screen_text(app)
        await pilot.pause(0.05)
        assert screen.at == stopped
        # the gap before the review is shown as it really was
        review = [s.label for s in screen.steps].index("REVIEW")
        assert screen.steps[review].gap_s > 40
        screen.go(review)
        await settle(pilot)
        assert "+40.2s" in screen_text(app)


async def test_replay_of_a_single_trace_without_a_change(store):
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open(TraceScreen("0cc0bc6fc8fa5a0a2dabe71eff3dc474"))
        await settle(pilot)
        await press(pilot, "R")
        assert isinstance(app.screen, ReplayScreen)
        assert app.screen.trace_id == "0cc0bc6fc8fa5a0a2dabe71eff3dc474"
        assert app.screen.steps and "1 trace(s)" in screen_text(app)


async def test_sql_console_shows_a_result_table_and_errors_inline(store):
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "semicolon")
        assert isinstance(app.screen, SqlScreen)
        await type_text(pilot, "select count(*) as n from spans")
        await press(pilot, "enter")
        table = app.screen.query_one("#table")
        assert table.row_count == 1
        assert table.get_row_at(0) == ["108"]
        assert "1 row" in screen_text(app)
        await press(pilot, "semicolon", "ctrl+u")
        await type_text(pilot, "drop table spans")
        await press(pilot, "enter")
        text = screen_text(app)
        assert "ERROR: read-only" in text
        await press(pilot, "ctrl+u")
        await type_text(pilot, "select nope from spans")
        await press(pilot, "enter")
        assert "ERROR:" in screen_text(app) and "nope" in screen_text(app)
        # the last good result is still there to read
        assert table.row_count == 1
        # a result naming a trace and span opens it
        await press(pilot, "ctrl+u")
        await type_text(pilot, "select trace_id, span_id from documents "
                        "where document_id = 'zendesk:ticket/88190'")
        await press(pilot, "enter")
        assert "Enter on a row opens its trace" in screen_text(app)
        await press(pilot, "enter")
        assert isinstance(app.screen, TraceScreen)
        assert app.screen.query_one(WaterfallView).current["span_id"] == RETRIEVAL_SPAN


async def test_pin_and_note_survive_a_restart_and_another_responder_sees_them(store):
    app = make_app(store, user="resp-a")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open(TraceScreen(SUPPORT_TRACE))
        await settle(pilot)
        app.screen.query_one(WaterfallView).select_span(RETRIEVAL_SPAN)
        await press(pilot, "i")
        await type_text(pilot, "INC-7 cross-customer reply")
        await press(pilot, "enter")
        await press(pilot, "n")
        await type_text(pilot, "retriever has no tenant filter")
        await press(pilot, "enter")
    # a second responder, a new process's worth of state: only the store is shared
    other = make_app(store, user="resp-b")
    async with other.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "I")
        assert isinstance(other.screen, IncidentsScreen)
        text = screen_text(other)
        assert "INC-7 cross-customer reply" in text
        assert "retriever has no tenant filter" in text
        assert "retrieve_similar_tickets" in text
        # Enter on the pin opens the trace at the pinned span
        other.screen.query_one("#pins").focus()
        await press(pilot, "enter")
        assert isinstance(other.screen, TraceScreen)
        assert other.screen.query_one(WaterfallView).current["span_id"] == RETRIEVAL_SPAN
    inc = Workspace(store).incident("INC-7 cross-customer reply")
    assert [(p["user"], p["span_id"]) for p in inc.pins] == [("resp-a", RETRIEVAL_SPAN)]
    assert [n["text"] for n in inc.notes] == ["retriever has no tenant filter"]


async def test_access_log_is_shown_in_the_tui_and_as_the_sql_view(store):
    app = make_app(store, user="auditor")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open(ReplayScreen(change_id=MIGRATION))
        await settle(pilot)
        await press(pilot, "o")
        await press(pilot, "A")
        text = screen_text(app)
        assert "access log: 2 entries" in text
        assert "open_ai_call" in text and "open_replay" in text and "auditor" in text
        await press(pilot, "semicolon")
        await type_text(pilot, "select action, user from access_log order by time")
        await press(pilot, "enter")
        table = app.screen.query_one("#table")
        assert [table.get_row_at(i) for i in range(table.row_count)] == [
            ["open_replay", "auditor"], ["open_ai_call", "auditor"]]


async def test_back_and_forward_history(store):
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "enter")
        trace_id = app.screen.trace_id
        await press(pilot, "enter")
        assert isinstance(app.screen, SpanScreen)
        await press(pilot, "left_square_bracket")
        assert isinstance(app.screen, TraceScreen)
        await press(pilot, "left_square_bracket")
        assert isinstance(app.screen, SearchScreen)
        await press(pilot, "left_square_bracket")  # search is the bottom: stays
        assert isinstance(app.screen, SearchScreen)
        await press(pilot, "right_square_bracket")
        assert isinstance(app.screen, TraceScreen) and app.screen.trace_id == trace_id
        await press(pilot, "right_square_bracket")
        assert isinstance(app.screen, SpanScreen)
        await press(pilot, "escape", "escape")
        assert isinstance(app.screen, SearchScreen)


async def test_follow_mode_shows_traces_that_arrive_while_watching(store, monkeypatch):
    from aitrail.store.ingest import Ingester
    from aitrail.tui import search as search_mod

    from ..conftest import SAMPLES

    monkeypatch.setattr(search_mod, "FOLLOW_S", 0.2)
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "slash")
        await type_text(pilot, "tenant:acme")
        await press(pilot, "enter")
        assert app.screen.rows == []
        await pilot.press("F")  # not `press`: with follow on, workers keep coming
        report = Ingester(store, "acme").add_files(SAMPLES[:1])
        assert report.ok and report.spans
        await wait_until(pilot, lambda: len(app.screen.rows) == 2, "the new traces")
        await pilot.press("F")
        assert app.screen.follow_timer is None
        await settle(pilot)
        assert "2 traces (tenant=acme)" in screen_text(app)


async def test_export_writes_otlp_json_that_ingests_back_and_is_audited(store, tmp_path):
    from aitrail.store.ingest import Ingester

    out = tmp_path / "evidence.jsonl"
    app = make_app(store, user="pm-writer")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open(TraceScreen(SUPPORT_TRACE))
        await settle(pilot)
        await press(pilot, "X")
        assert app.screen.query_one("#answer").value == f"trace-{SUPPORT_TRACE}.otlp.jsonl"
        await press(pilot, "ctrl+u")
        await type_text(pilot, str(out))
        await press(pilot, "enter")
        assert out.exists()
    again = Ingester(tmp_path / "copy", "default").add_files([out])
    assert again.ok and again.spans == 8
    log = Workspace(store).access_log().rows
    assert [(r["action"], r["user"], r["trace_id"]) for r in log] == [
        ("export", "pm-writer", SUPPORT_TRACE)]


async def test_a_trace_found_by_text_opens_at_the_span_that_holds_the_text(store):
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "slash")
        await type_text(pilot, '"Brightwave Dental"')
        await press(pilot, "enter")
        assert len(app.screen.rows) == 2
        await press(pilot, "G", "enter")
        assert app.screen.trace_id == SUPPORT_TRACE
        assert app.screen.query_one(WaterfallView).current["span_id"] == RETRIEVAL_SPAN


async def test_a_legal_hold_on_an_incident_keeps_its_traces_from_retention(store):
    from datetime import UTC, datetime, timedelta

    from aitrail.store.query import Store
    from aitrail.store.retention.apply import apply_retention
    from aitrail.store.retention.holds import active_holds
    from aitrail.store.retention.policy import RetentionPolicy

    with Store(store) as st:
        trace_id = st.change_trace_ids(MIGRATION)[0]
    Workspace(store, user="resp-a").pin("INC-9 billing lock", trace_id)
    app = make_app(store, user="resp-a", incident="INC-9 billing lock")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "I")
        assert isinstance(app.screen, IncidentsScreen)
        assert "not held: H places a legal hold" in screen_text(app)
        await press(pilot, "H")
        await type_text(pilot, "postmortem")
        await press(pilot, "enter")
        await wait_until(pilot, lambda: "legal hold hold-1 by resp-a" in screen_text(app),
                         "the hold to show")
    [hold] = active_holds(store)
    assert hold.select == {"incident": "INC-9 billing lock"} and hold.reason == "postmortem"
    assert hold.trace_ids == [trace_id]
    report = apply_retention(store, RetentionPolicy(days=1),
                             now=datetime.now(UTC) + timedelta(days=3650))
    assert report.held and all(v.holds == ["hold-1"] for v in report.held)
    with Store(store) as st:
        assert st.trace(trace_id).rows  # held: still there and searchable
