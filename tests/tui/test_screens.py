"""What the screens show at 80x24 and 120x40, and the waterfall on a 50,000-span trace."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from textual.app import App, ComposeResult

from aitrail.tui.aicall import SpanScreen
from aitrail.tui.app import make_app
from aitrail.tui.trace import TraceScreen
from aitrail.tui.widgets import WaterfallView

from .conftest import press, screen_text, settle, type_text

pytestmark = pytest.mark.anyio
MIGRATION_AGENT = "9fdcbd1e1b8de4148708ee9a67882717"
DEPLOY = "14e97493a3ab0e550921fa978579dda4"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_search_trace_and_ai_call_screens_fit_the_terminal(store, tmp_path, size):
    app = make_app(store)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        text = screen_text(app)
        lines = text.splitlines()
        assert len(lines) == size[1] and all(len(line) == size[0] for line in lines)
        assert "17 traces (no filters)" in text
        assert "invoke_agent coding-agent" in text
        assert "? Keys" in lines[-1]
        # facets need room: shown at 120 columns, hidden at 80
        assert ("─ service (spans) ─" in text) == (size[0] >= 110)
        app.open(TraceScreen(MIGRATION_AGENT))
        await settle(pilot)
        text = screen_text(app)
        assert "10 spans" in text
        assert "policy.check db-migrat" in text
        assert "⚑" in text and "[review→escalate]" in text
        assert "│" in text and "█" in text  # timing bars
        await press(pilot, "x")  # the first flagged span: the escalated policy check
        assert "span aa7265ac6a679b12" in screen_text(app)
        await press(pilot, "enter")
        assert isinstance(app.screen, SpanScreen)
        text = screen_text(app)
        assert "db-migrations v3: verdict review, enforced escalate" in text
        svg = app.export_screenshot()
        assert svg.startswith("<svg") and "escalate" in svg
        app.save_screenshot(filename="ai_call.svg", path=str(tmp_path))
        assert (tmp_path / "ai_call.svg").stat().st_size > 1000


async def test_errors_read_as_words_without_colour(store, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.no_color
        await settle(pilot)
        app.open(TraceScreen(DEPLOY))
        await settle(pilot)
        text = screen_text(app)
        assert "✗" in text and "ERROR" in text
        assert "ERROR canceling statement due to lock timeout" in text or \
            "3 ERROR" in text


def _big_trace(n: int) -> list[dict]:
    """A root, 50 agent turns each with n/50 children; one error deep inside."""
    t0 = datetime(2026, 11, 10, tzinfo=UTC)
    rows = [{"trace_id": "f" * 32, "span_id": "r".ljust(16, "0"), "parent_span_id": None,
             "name": "root", "service_name": "agent", "start_time": t0,
             "end_time": t0 + timedelta(seconds=n), "duration_ms": n * 1000.0,
             "status_code": "unset", "ai_kind": "agent"}]
    per = (n - 1) // 50
    for turn in range(50):
        tid = f"t{turn:015d}"
        rows.append({**rows[0], "span_id": tid, "parent_span_id": rows[0]["span_id"],
                     "name": f"turn {turn}", "start_time": t0 + timedelta(seconds=turn),
                     "end_time": t0 + timedelta(seconds=turn + 1), "duration_ms": 1000.0})
        for k in range(per - 1):
            rows.append({**rows[0], "span_id": f"c{turn:05d}{k:010d}", "parent_span_id": tid,
                         "name": f"tool call {turn}.{k}", "ai_kind": "tool",
                         "start_time": t0 + timedelta(seconds=turn, microseconds=k),
                         "end_time": t0 + timedelta(seconds=turn, microseconds=k + 5),
                         "duration_ms": 0.005,
                         "status_code": "error" if (turn, k) == (42, 7) else "unset"})
    return rows


class _WaterfallApp(App):
    def compose(self) -> ComposeResult:
        yield WaterfallView()


async def test_a_50000_span_trace_opens_folded_and_paints_only_the_screen():
    rows = _big_trace(50_000)
    assert len(rows) >= 49_000
    app = _WaterfallApp()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(WaterfallView)
        started = time.perf_counter()
        view.set_spans(rows)
        await pilot.pause()
        elapsed = time.perf_counter() - started
        assert elapsed < 2.0, f"indexing 50k spans took {elapsed:.2f} s"
        assert len(view.shown) == 51  # the root and its 50 turns; tool calls folded
        text = screen_text(app)
        assert re.search(r"▸ turn 0 .*\(\+998\)", text)
        calls = []
        original = view._line_text

        def counting(i, width):
            calls.append(i)
            return original(i, width)

        view._line_text = counting
        view.focus()
        await pilot.press("x")  # jump to the error: unfolds its turn only
        await pilot.pause()
        assert view.current["name"] == "tool call 42.7"
        assert len(view.shown) == 51 + (len(rows) - 51) // 50
        assert 0 < len(set(calls)) <= 2 * 24  # two screenfuls (before, after the jump)
        await pilot.press("E")  # unfold everything: still responsive
        await pilot.pause()
        assert len(view.shown) == len(rows)
        await pilot.press("G")
        await pilot.pause()
        assert view.cursor == len(rows) - 1


async def test_an_empty_store_says_so_instead_of_showing_an_empty_table(tmp_path):
    app = make_app(tmp_path / "nothing-yet")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "holds no spans yet" in screen_text(app)
        await press(pilot, "semicolon")
        await type_text(pilot, "select count(*) from spans")
        await press(pilot, "enter")
        assert app.screen.query_one("#table").get_row_at(0) == ["0"]
