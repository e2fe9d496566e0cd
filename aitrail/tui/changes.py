"""The changes the store knows: pick one to replay."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from . import marks
from .base import StoreScreen
from .widgets import VimDataTable


class ChangesScreen(StoreScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "refresh", "Reload", id="changes.reload"),
    ]
    DEFAULT_CSS = """
    ChangesScreen #title { height: 1; padding: 0 1; background: $primary-background; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static("changes · Enter replays one", id="title")
        yield VimDataTable(id="table")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#table", DataTable)
        for label in ("change", "first seen", "kinds", "services", "verdicts", "reviewers",
                      "err"):
            table.add_column(label)
        self.action_refresh()
        table.focus()

    def reopen(self) -> ChangesScreen:
        return ChangesScreen()

    def action_refresh(self) -> None:
        self.fetch("changes", lambda c: c.changes(), self.show)

    def show(self, res: Any) -> None:
        self.rows = res.rows
        table = self.query_one("#table", DataTable)
        table.clear()
        for i, r in enumerate(res.rows):
            table.add_row(r["change_id"], r["first_seen"].strftime("%m-%d %H:%M"),
                          marks.cell(r["kinds"], 24), marks.cell(r["services"], 30),
                          marks.cell(r["verdicts"]), marks.cell(r["reviewers"]),
                          str(r["errors"] or ""), key=str(i))
        self.query_one("#title", Static).update(
            f"{len(res.rows)} changes · Enter replays one"
            + (" · more results — truncated" if res.truncated else ""))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        from .replay_view import ReplayScreen

        self.aitrail.open(ReplayScreen(change_id=self.rows[int(str(event.row_key.value))]
                                       ["change_id"]))
