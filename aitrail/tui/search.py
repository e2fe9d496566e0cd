"""Search: a filter bar, facet counts and one page of matching traces at a time."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from . import filters, marks
from .base import StoreScreen
from .widgets import VimDataTable, VimOptionList

# Follow mode looks for new spans this often.
FOLLOW_S = 2.0

PAGE = 50
HINT = ("since:7d until: service: model: verdict: reviewer: change: user: kind: tenant: "
        "+ free text")


class SearchScreen(StoreScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter", id="search.filter"),
        Binding("escape", "focus_results", "Results", show=False, id="search.results"),
        Binding("e", "form", "Form", show=False, id="search.form"),
        Binding("m", "more", "More", id="search.more"),
        Binding("f", "toggle_facets", "Facets", id="search.facets"),
        Binding("c", "changes", "Changes", show=False, id="search.changes"),
        Binding("r", "replay", "Replay", id="search.replay"),
        Binding("F", "follow", "Follow", show=False, id="search.follow"),
    ]
    DEFAULT_CSS = """
    SearchScreen #filter { height: 3; }
    SearchScreen #summary { height: 1; padding: 0 1; }
    SearchScreen #hint { height: 1; padding: 0 1; color: $text-muted; }
    SearchScreen #facets { width: 34; border-left: solid $primary-background;
                           text-wrap: nowrap; text-overflow: ellipsis; }
    SearchScreen #facets.-hidden { display: none; }
    SearchScreen #results { width: 1fr; }
    """

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.text = text
        self.limit = PAGE
        self.query_: filters.Query = filters.Query()
        self.rows: list[dict[str, Any]] = []
        self.follow_timer: Any = None

    def compose(self) -> ComposeResult:
        yield Input(self.text, placeholder='verdict:review since:30d "another customer"',
                    id="filter")
        yield Static("", id="summary")
        yield Static(HINT, id="hint")
        with Horizontal():
            with Vertical(id="results"):
                yield VimDataTable(id="table")
            yield VimOptionList(id="facets")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#table", DataTable)
        for label, key in (("start (UTC)", "start"), ("first match", "first"),
                           ("services", "services"), ("verdicts", "verdicts"),
                           ("err", "errors"), ("change", "changes"), ("spans", "spans"),
                           ("trace", "trace")):
            table.add_column(label, key=key)
        self.query_one("#facets").set_class(self.app.size.width < 110, "-hidden")
        self.run_search()
        table.focus()

    def reopen(self) -> SearchScreen:
        return SearchScreen(self.query_one("#filter", Input).value)

    # -- searching ---------------------------------------------------------------------------

    def run_search(self, more: bool = False) -> None:
        text = self.query_one("#filter", Input).value
        try:
            self.query_ = filters.parse(text)
        except filters.FilterError as e:
            self.query_one("#summary", Static).update(f"filter error: {e}")
            return
        if not more:
            self.limit = PAGE
        self.query_one("#summary", Static).update("searching…")
        f, limit = dict(self.query_.filters), self.limit

        def results(found: tuple[Any, bool]) -> None:
            self.show_results(*found)
            # facets after the results: both share one connection, the results matter first
            if not more or not self.follow_timer:
                self.fetch("facets", lambda c: c.facets(6, **f), self.show_facets,
                           self.show_error)

        self.fetch("search", lambda c: (c.search(limit, **f), c.has_data()), results,
                   self.show_error)

    def show_error(self, message: str) -> None:
        self.query_one("#summary", Static).update(f"search failed: {message}")

    def show_results(self, res: Any, has_data: bool = True) -> None:
        table = self.query_one("#table", DataTable)
        keep = table.cursor_row if table.row_count else 0
        table.clear()
        self.rows = res.rows
        for r in res.rows:
            verdicts = r.get("verdicts") or []
            table.add_row(
                r["start_time"].strftime("%m-%d %H:%M:%S"),
                marks.cell(r.get("first_span"), 30), marks.cell(r.get("services"), 24),
                marks.cell(verdicts, 16), str(r.get("errors") or "") or "",
                marks.cell(r.get("changes"), 34), str(r.get("matching_spans")),
                r["trace_id"], key=f"{r['tenant']}/{r['trace_id']}")
        if res.rows:
            table.move_cursor(row=min(keep, len(res.rows) - 1))
        where = ", ".join(self.query_.shown) or "no filters"
        n = len(res.rows)
        if not has_data:
            msg = f"this store holds no spans yet ({self.client.root})"
        elif res.truncated:
            msg = (f"{n} traces shown ({where}) · more results — truncated: "
                   "m loads more")
        else:
            msg = f"{n} trace{'s' if n != 1 else ''} ({where})"
        self.query_one("#summary", Static).update(msg)

    def show_facets(self, facets: dict[str, list[tuple[Any, int]]]) -> None:
        self.aitrail.load_changes_once()
        ol = self.query_one("#facets", OptionList)
        ol.clear_options()
        options: list[Option | None] = []
        for col, values in facets.items():
            if not values:
                continue
            key = filters.FACET_KEYS.get(col, col)
            options.append(Option(f"─ {key} (spans) ─", disabled=True))
            for value, n in values:
                label = marks.cell(value, 22)
                options.append(Option(f"{n:>5} {label}", id=f"{key}\x00{value}"))
        ol.add_options(options)

    # -- events ------------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.run_search()
        self.query_one("#table").focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if not event.option.id or "\x00" not in event.option.id:
            return
        key, value = event.option.id.split("\x00", 1)
        bar = self.query_one("#filter", Input)
        bar.value = filters.add_filter(bar.value, key, value)
        self.run_search()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        tenant, trace_id = str(event.row_key.value).split("/", 1)
        from .trace import TraceScreen

        self.aitrail.open(TraceScreen(trace_id, tenant=tenant,
                                      find_text=self.query_.filters.get("text")))

    def action_focus_results(self) -> None:
        self.query_one("#table").focus()

    # -- actions -----------------------------------------------------------------------------

    def action_focus_filter(self) -> None:
        self.query_one("#filter").focus()

    def action_form(self) -> None:
        from .filter_form import FilterForm

        def apply(text: str | None) -> None:
            if text is not None:
                self.query_one("#filter", Input).value = text
                self.run_search()

        self.app.push_screen(FilterForm(self.query_one("#filter", Input).value), apply)

    def action_more(self) -> None:
        self.limit += PAGE
        self.run_search(more=True)

    def action_toggle_facets(self) -> None:
        self.query_one("#facets").toggle_class("-hidden")

    def action_changes(self) -> None:
        from .changes import ChangesScreen

        self.aitrail.open(ChangesScreen())

    def action_replay(self) -> None:
        """Replay the change of the highlighted trace."""
        table = self.query_one("#table", DataTable)
        if not self.rows or table.cursor_row >= len(self.rows):
            return
        row = self.rows[table.cursor_row]
        from .replay_view import ReplayScreen

        if row.get("changes"):
            self.aitrail.open(ReplayScreen(change_id=row["changes"][0]))
        else:
            self.aitrail.open(ReplayScreen(trace_id=row["trace_id"]))

    def action_follow(self) -> None:
        if self.follow_timer is None:
            self.follow_timer = self.set_interval(FOLLOW_S, lambda: self.run_search(more=True))
            self.notify("follow: searching again every 2 s")
        else:
            self.follow_timer.stop()
            self.follow_timer = None
            self.notify("follow: off")
