"""The read audit: who opened which AI call, replay or export, and when."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from . import marks
from .base import StoreScreen
from .widgets import VimDataTable


class AccessLogScreen(StoreScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "refresh", "Reload", id="audit.reload"),
    ]
    DEFAULT_CSS = """
    AccessLogScreen #title { height: 1; padding: 0 1; background: $primary-background; }
    """

    def compose(self) -> ComposeResult:
        yield Static("access log (also the SQL view access_log)", id="title")
        yield VimDataTable(id="table")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#table", DataTable)
        for label in ("time (UTC)", "user", "action", "what", "trace", "span", "change"):
            table.add_column(label)
        self.action_refresh()
        table.focus()

    def reopen(self) -> AccessLogScreen:
        return AccessLogScreen()

    def action_refresh(self) -> None:
        self.fetch("audit", lambda c: c.access_log(), self.show)

    def show(self, res: Any) -> None:
        table = self.query_one("#table", DataTable)
        table.clear()
        for r in res.rows:
            table.add_row(str(r["time"])[:19].replace("T", " "), r["user"], r["action"],
                          marks.cell(r["target"], 40), r["trace_id"] or "",
                          r["span_id"] or "", r["change_id"] or "")
        self.query_one("#title", Static).update(
            f"access log: {len(res.rows)} entries, newest first (also the SQL view "
            "access_log)" + (" · more results — truncated" if res.truncated else ""))
