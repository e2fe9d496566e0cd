"""Pivots: pick a value of a span, then list every span that shares it."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from ..store.pivots import Pivot
from . import marks
from .base import StoreScreen
from .widgets import VimDataTable, VimOptionList


class PivotPicker(ModalScreen[Pivot | None]):
    """Which of this span's values to pivot on."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel", id="pivot.cancel"),
    ]
    DEFAULT_CSS = """
    PivotPicker { align: center middle; }
    PivotPicker > Vertical { width: 76; max-width: 100%; height: auto; max-height: 80%;
                             border: round $primary; background: $surface; }
    PivotPicker #pick { height: auto; max-height: 16; }
    """

    def __init__(self, pivots: list[Pivot]) -> None:
        super().__init__()
        self.pivots = pivots

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("pivot: every span sharing… (Enter picks, Esc cancels)")
            yield VimOptionList(*[Option(p.label, id=str(i))
                                  for i, p in enumerate(self.pivots)], id="pick")

    def on_mount(self) -> None:
        self.query_one("#pick").focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.pivots[int(event.option.id or 0)])


class PivotScreen(StoreScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "open_span", "Open span", id="pivots.open_span"),
    ]
    DEFAULT_CSS = """
    PivotScreen #title { height: auto; max-height: 3; padding: 0 1;
                         background: $primary-background; }
    """

    def __init__(self, pivot: Pivot) -> None:
        super().__init__()
        self.pivot = pivot
        self.rows: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(f"every span sharing {self.pivot.label} · loading…", id="title")
        yield VimDataTable(id="table")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#table", DataTable)
        for label in ("start (UTC)", "service", "span", "kind", "user", "how", "trace"):
            table.add_column(label)
        pivot = self.pivot
        self.fetch("pivot", lambda c: c.spans_sharing(pivot), self.show, self.failed)
        table.focus()

    def reopen(self) -> PivotScreen:
        return PivotScreen(self.pivot)

    def failed(self, message: str) -> None:
        self.query_one("#title", Static).update(f"pivot {self.pivot.label}: {message}")

    def show(self, res: Any) -> None:
        self.rows = res.rows
        table = self.query_one("#table", DataTable)
        table.clear()
        for i, r in enumerate(res.rows):
            table.add_row(r["start_time"].strftime("%m-%d %H:%M:%S"),
                          marks.cell(r.get("service_name"), 20), marks.cell(r["name"], 30),
                          r.get("ai_kind") or "", marks.cell(r.get("user_id"), 24),
                          marks.cell(r.get("detail"), 40), r["trace_id"], key=str(i))
        traces = len({r["trace_id"] for r in res.rows})
        users = sorted({r["user_id"] for r in res.rows if r.get("user_id")})
        more = " · more results — truncated" if res.truncated else ""
        if self.pivot.kind == "redaction":
            what = (f"{self.pivot.label} appeared in {traces} trace{'s' * (traces != 1)} "
                    f"({len(res.rows)} spans)")
        else:
            what = f"{len(res.rows)} spans in {traces} traces share {self.pivot.label}"
        self.query_one("#title", Static).update(
            f"{what} · users: {', '.join(users) or 'none recorded'}{more} · "
            "Enter: trace, o: span")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        r = self.rows[int(str(event.row_key.value))]
        from .trace import TraceScreen

        self.aitrail.open(TraceScreen(r["trace_id"], r["tenant"], r["span_id"]))

    def action_open_span(self) -> None:
        table = self.query_one("#table", DataTable)
        if not self.rows:
            return
        r = self.rows[table.cursor_row]
        tid, tenant, sid = r["trace_id"], r["tenant"], r["span_id"]

        def found(rows: list[dict[str, Any]]) -> None:
            from .aicall import SpanScreen

            row = next((x for x in rows if x["span_id"] == sid), None)
            if row is not None:
                self.aitrail.open(SpanScreen(row))

        self.fetch("open", lambda c: c.trace(tid, tenant).rows, found)
