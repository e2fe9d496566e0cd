"""Exporting a verifiable bundle from the trace, replay and incident screens: a prompt for
the path, progress while it is built, a bundle that verifies offline, and an access log
entry for every export."""

from __future__ import annotations

from pathlib import Path

import pytest

from aitrail.store.bundle.verify import verify_bundle
from aitrail.store.workspace import Workspace
from aitrail.tui.app import make_app
from aitrail.tui.incidents import IncidentsScreen
from aitrail.tui.replay_view import ReplayScreen
from aitrail.tui.trace import TraceScreen

from .conftest import press, settle, type_text

pytestmark = pytest.mark.anyio

MIGRATION = "chg-billing-migration-4821"
AGENT_TRACE = "9fdcbd1e1b8de4148708ee9a67882717"
CASES = {
    "trace": (lambda: TraceScreen(AGENT_TRACE), f"trace-{AGENT_TRACE[:12]}.tar.gz", 1),
    "change": (lambda: ReplayScreen(change_id=MIGRATION), f"{MIGRATION}.tar.gz", 3),
    "incident": (lambda: IncidentsScreen("INC-311"), "INC-311.tar.gz", 2),
}


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_bundle_export_from_a_screen_verifies_and_is_audited(store: Path,
                                                                   tmp_path: Path, kind: str):
    ws = Workspace(store, "ana")
    ws.pin("INC-311", AGENT_TRACE)
    ws.pin("INC-311", "14e97493a3ab0e550921fa978579dda4", "b50a16f28f5f46a4")
    make_screen, default, traces = CASES[kind]
    out = tmp_path / f"{kind}.tar.gz"
    app = make_app(store, user="pm-writer")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open(make_screen())
        await settle(pilot)
        screen = app.screen
        await press(pilot, "B")
        assert app.screen.query_one("#answer").value == default
        await press(pilot, "ctrl+u")
        await type_text(pilot, str(out))
        await press(pilot, "enter")
        await settle(pilot)
        assert app.screen is screen  # the progress modal is gone
        assert "reading span files" in screen.last_export.stages
        assert "signing" in screen.last_export.stages
    report = verify_bundle(out)
    assert report.ok and report.traces == traces
    assert report.selection["kind"] == kind and report.exported_by == "pm-writer"
    log = Workspace(store).access_log().rows
    exports = [r for r in log if r["action"] == "export"]
    assert len(exports) == 1 and exports[0]["user"] == "pm-writer"
    assert str(out) in exports[0]["target"]


async def test_a_failed_bundle_export_is_reported_and_not_logged(store: Path, tmp_path: Path):
    app = make_app(store, user="pm-writer")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open(TraceScreen(AGENT_TRACE))
        await settle(pilot)
        await press(pilot, "B", "ctrl+u")
        await type_text(pilot, str(tmp_path / "no" / "such" / "dir" / "b.tar.gz"))
        await press(pilot, "enter")
        await settle(pilot)
        assert any("export failed" in str(n.message) for n in app._notifications)
    assert not [r for r in Workspace(store).access_log().rows if r["action"] == "export"]
