"""Findings: where the traces break the declared AI change records; Enter opens the trace."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from . import marks
from .base import StoreScreen
from .widgets import VimDataTable


class FindingsScreen(StoreScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "refresh", "Re-evaluate", id="findings.reload"),
    ]
    DEFAULT_CSS = """
    FindingsScreen #title { height: 1; padding: 0 1; background: $primary-background; }
    FindingsScreen #detail { height: auto; max-height: 5; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static("findings · evaluating the declarations…", id="title")
        yield VimDataTable(id="table")
        yield Static("", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#table", DataTable)
        for label in ("when", "severity", "rule", "feature", "version", "evidence"):
            table.add_column(label)
        self.fetch("findings", lambda c: c.findings(), self.show)
        table.focus()

    def reopen(self) -> FindingsScreen:
        return FindingsScreen()

    def action_refresh(self) -> None:
        self.fetch("findings", lambda c: c.findings(refresh=True), self.show)

    def show(self, res: Any) -> None:
        self.rows = res.rows
        table = self.query_one("#table", DataTable)
        table.clear()
        for i, r in enumerate(res.rows):
            # severity in words (NO_COLOR), the version starred when not yet in force
            table.add_row(r["time"].strftime("%m-%d %H:%M"), r["severity"].upper(),
                          r["rule"], marks.cell(r["feature"], 30),
                          r["version"] + ("" if r["in_force"] else "*"),
                          f"{r['trace_id'][:12]}… ({r['evidence_count']})", key=str(i))
        title = (f"{len(res.rows)} findings · Enter opens the trace · ctrl+r re-evaluates"
                 + (" · more results — truncated" if res.truncated else ""))
        if not res.rows:
            title = ("no findings: nothing breaks the declarations, or none are recorded "
                     "(aitrail declare FILE) or linked ([features] in aitrail.toml)")
        self.query_one("#title", Static).update(title)
        if res.rows:
            self._detail(0)

    def _detail(self, i: int) -> None:
        r = self.rows[i]
        self.query_one("#detail", Static).update(
            f"{r['explanation']}\nchange {r['change_id'] or '-'} · span "
            f"{r['trace_id']}/{r['span_id']}")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and self.rows:
            self._detail(int(str(event.row_key.value)))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        from .trace import TraceScreen

        r = self.rows[int(str(event.row_key.value))]
        self.aitrail.open(TraceScreen(r["trace_id"], r["tenant"], r["span_id"]))
