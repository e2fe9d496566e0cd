"""The SQL console (`;`, as in lnav): one read-only SELECT through `Store.sql`."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input, Static

from . import marks
from .base import StoreScreen
from .widgets import VimDataTable

ROW_LIMIT = 500


class SqlScreen(StoreScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash,semicolon", "edit", "Edit query", id="sql.edit"),
        Binding("escape", "results_or_back", "Results/back", show=False, id="sql.results"),
    ]
    DEFAULT_CSS = """
    SqlScreen #query { height: 3; }
    SqlScreen #status { height: auto; max-height: 4; padding: 0 1; }
    SqlScreen #status.-error { color: $error; text-style: bold; }
    """

    def __init__(self, query: str = "") -> None:
        super().__init__()
        self.initial = query
        self.result: Any = None

    def compose(self) -> ComposeResult:
        yield Input(self.initial, id="query",
                    placeholder="a query over spans, ai_calls, documents, decisions, "
                    "changes, logs, access_log")
        yield Static("read-only: one SELECT over the views (docs/schema.md); Enter runs it",
                     id="status")
        yield VimDataTable(id="table")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#query").focus()

    def reopen(self) -> SqlScreen:
        return SqlScreen(self.query_one("#query", Input).value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        if not query:
            return
        self.query_one("#status", Static).update("running…")
        self.fetch("sql", lambda c: c.sql(query, ROW_LIMIT), self.show, self.failed)

    def failed(self, message: str) -> None:
        status = self.query_one("#status", Static)
        status.add_class("-error")
        status.update(f"ERROR: {message}")

    def show(self, res: Any) -> None:
        self.result = res
        status = self.query_one("#status", Static)
        status.remove_class("-error")
        table = self.query_one("#table", DataTable)
        table.clear(columns=True)
        for c in res.columns:
            table.add_column(c)
        for r in res.rows:
            table.add_row(*(marks.cell(r[c], 60) for c in res.columns))
        n = len(res.rows)
        status.update(f"{n} row{'s' if n != 1 else ''}"
                      + (f" · more results — truncated at {ROW_LIMIT}" if res.truncated
                         else "")
                      + (" · Enter on a row opens its trace" if "trace_id" in res.columns
                         else ""))
        if n:
            table.focus()

    def action_edit(self) -> None:
        self.query_one("#query").focus()

    def action_results_or_back(self) -> None:
        if self.query_one("#query").has_focus:
            self.query_one("#table").focus()
        else:
            self.aitrail.action_back()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """A result row that names a trace (and span) opens it."""
        res = self.result
        if res is None or "trace_id" not in res.columns or event.cursor_row >= len(res.rows):
            return
        row = res.rows[event.cursor_row]
        if not row.get("trace_id"):
            return
        from .trace import TraceScreen

        self.aitrail.open(TraceScreen(str(row["trace_id"]), row.get("tenant"),
                                      row.get("span_id")))
