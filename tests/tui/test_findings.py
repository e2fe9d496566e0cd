"""The findings screen, and `!` markers on the trace view and replay steps: the real app
through Pilot, on a copy of the sample store with the samples' declarations recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from aitrail.store.declarations import DeclarationLog, read_declaration
from aitrail.tui.app import make_app
from aitrail.tui.findings import FindingsScreen
from aitrail.tui.replay_view import ReplayScreen
from aitrail.tui.trace import TraceScreen

from ..store.findings_traces import BEFORE, SAMPLE_FEATURES, SAMPLES
from .conftest import press, screen_text, settle

pytestmark = pytest.mark.anyio
ONCALL = "cfc8fb4f69a296af60b7ed66cdeecb05"


@pytest.fixture
def declared(store: Path) -> Path:
    log = DeclarationLog(store)
    for path in sorted(SAMPLES.glob("*/ai_change.yaml")):
        decl, text = read_declaration(path)
        log.declare(decl, text, str(path), BEFORE)
    return store


async def test_findings_screen_lists_them_and_opens_the_evidence_trace(declared):
    app = make_app(declared, features=SAMPLE_FEATURES)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "exclamation_mark")
        assert isinstance(app.screen, FindingsScreen)
        text = screen_text(app)
        assert "findings · Enter opens the trace" in text
        assert "review_missing" in text and "HIGH" in text
        assert "retrieval_outside_permis" in text
        # the detail line says what to do for the highlighted finding
        assert "rotate what leaked" in text  # the newest: the pasted credential
        await press(pilot, "j", "j")
        assert "review_missing" in screen_text(app)
        rows = app.screen.rows
        at = next(i for i, r in enumerate(rows) if r["trace_id"] == ONCALL)
        await press(pilot, "g", *["j"] * at, "enter")
        assert isinstance(app.screen, TraceScreen)
        text = screen_text(app)
        assert "! review_missing" in text  # exec kubectl, the change that landed unreviewed
        assert "span a901aee4b0caea02" in text


async def test_replay_marks_the_step_that_broke_the_declaration(declared):
    app = make_app(declared, features=SAMPLE_FEATURES)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.open(ReplayScreen(change_id="chg-support-reply-88231"))
        await settle(pilot)
        text = screen_text(app)
        line = next(li for li in text.splitlines() if "post_public_comment" in li)
        assert "! action_not_allowed,review_missing" in line
        retrieval = next(li for li in text.splitlines() if "RETRIEVED" in li)
        assert "! retrieval_outside_permissions" in retrieval


async def test_without_declarations_the_screen_says_how_to_get_findings(store):
    app = make_app(store)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await press(pilot, "exclamation_mark")
        assert "aitrail declare FILE" in screen_text(app)
        app.open(TraceScreen(ONCALL))
        await settle(pilot)
        assert "! " not in screen_text(app)
