"""Export a verifiable bundle from a screen: ask where, then build it in a worker while a
small modal shows how far it got (reading files can take a while on a big store)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import ProgressBar, Static

if TYPE_CHECKING:
    from .base import StoreScreen


class ExportProgress(ModalScreen[None]):
    DEFAULT_CSS = """
    ExportProgress { align: center middle; }
    ExportProgress > Vertical { width: 60; max-width: 100%; height: auto;
                                border: round $primary; background: $surface; padding: 0 1; }
    """

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what
        self.stages: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"exporting {self.what}")
            yield Static("starting…", id="stage")
            yield ProgressBar(total=None, show_eta=False, id="bar")

    def step(self, stage: str, done: int, total: int) -> None:
        if not self.stages or self.stages[-1] != stage:
            self.stages.append(stage)
        if not self.is_attached:
            return
        self.query_one("#stage", Static).update(stage)
        self.query_one("#bar", ProgressBar).update(total=max(total, 1), progress=done)


def export_bundle(screen: StoreScreen, kind: str, value: str, tenant: str | None,
                  default_name: str) -> None:
    """Prompt for a path, then export `kind` (trace, change, incident) `value` there."""
    app = screen.app

    def start(path: str | None) -> None:
        if not path:
            return
        progress = ExportProgress(f"{kind} {value}")
        screen.last_export = progress  # type: ignore[attr-defined]
        app.push_screen(progress)

        def tick(stage: str, done: int, total: int) -> None:
            app.call_from_thread(progress.step, stage, done, total)

        def done(report: Any) -> None:
            progress.dismiss()
            screen.notify(f"exported {report.spans} spans of {report.traces} trace(s) to "
                          f"{report.path}; check it anywhere with `aitrail verify "
                          f"{report.path} --key {report.fingerprint}`", timeout=12)

        def failed(msg: str) -> None:
            progress.dismiss()
            screen.notify(f"export failed: {msg}", severity="error", timeout=12)

        screen.fetch("bundle", lambda c: c.export_bundle(kind, value, path, tenant, tick),
                     done, failed)

    app.push_screen(screen.aitrail.prompt_screen(
        f"export {kind} {value} as a verifiable bundle (.tar.gz) to:", default_name), start)
