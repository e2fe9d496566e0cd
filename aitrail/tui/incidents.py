"""The incident workspace: pinned traces and spans and notes, shared through the store."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from ..store.retention.holds import Hold
from ..store.workspace import Incident
from .base import StoreScreen
from .widgets import VimDataTable, VimOptionList


class IncidentsScreen(StoreScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "note", "Add note", id="incident.note"),
        Binding("N", "new", "New incident", id="incident.new"),
        Binding("d", "unpin", "Unpin", id="incident.unpin"),
        Binding("B", "bundle", "Bundle", id="incident.bundle"),
        Binding("H", "hold", "Legal hold", id="incident.hold"),
        Binding("ctrl+r", "refresh", "Reload", id="incident.reload"),
        Binding("tab", "app.focus_next", "Next pane", show=False, id="incident.next_pane"),
    ]
    DEFAULT_CSS = """
    IncidentsScreen #names { width: 24; border-right: solid $primary-background; }
    IncidentsScreen #title { height: 1; padding: 0 1; background: $primary-background; }
    IncidentsScreen #pins { height: 1fr; }
    IncidentsScreen #notes-scroll { height: 1fr; padding: 0 1;
                                    border-top: solid $primary-background; }
    """

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.selected = name
        self.incidents: list[Incident] = []
        self.holds: list[Hold] = []

    def compose(self) -> ComposeResult:
        yield Static("incidents (shared by everyone who opens this store)", id="title")
        with Horizontal():
            yield VimOptionList(id="names")
            with Vertical():
                yield VimDataTable(id="pins")
                with VerticalScroll(id="notes-scroll"):
                    yield Static("", id="notes")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#pins", DataTable)
        for label in ("pinned", "by", "trace", "span"):
            table.add_column(label)
        self.selected = self.selected or self.aitrail.incident
        self.action_refresh()

    def reopen(self) -> IncidentsScreen:
        return IncidentsScreen(self.selected)

    def action_refresh(self) -> None:
        self.fetch("incidents", lambda c: (c.workspace.incidents(), c.holds()), self.show)

    def show(self, found: tuple[list[Incident], list[Hold]]) -> None:
        incidents, self.holds = found
        self.incidents = incidents
        ol = self.query_one("#names", OptionList)
        ol.clear_options()
        ol.add_options([Option(f"{i.name} ({len(i.pins)}·{len(i.notes)})", id=str(n))
                        for n, i in enumerate(incidents)])
        names = [i.name for i in incidents]
        if not incidents:
            self.query_one("#notes", Static).update(
                "No incidents yet. In a trace or span press i to pin it to one, or n to "
                "write a note; N here starts a named incident.")
            return
        at = names.index(self.selected) if self.selected in names else 0
        ol.highlighted = at
        self.paint(incidents[at])
        ol.focus()

    def paint(self, inc: Incident) -> None:
        self.selected = inc.name
        self.aitrail.incident = inc.name
        table = self.query_one("#pins", DataTable)
        table.clear()
        for n, p in enumerate(inc.pins):
            table.add_row(p.get("label") or "", p.get("user") or "", p["trace_id"],
                          p.get("span_id") or "", key=str(n))
        notes = Text()
        notes.append(f"{inc.name}: {len(inc.pins)} pinned, {len(inc.notes)} notes\n", "bold")
        held = [h for h in self.holds if h.select.get("incident") == inc.name]
        for h in held:
            notes.append(f"legal hold {h.id} by {h.user}: kept from retention"
                         + (f" ({h.reason})" if h.reason else "") + "\n", "bold green")
        if not held:
            notes.append("not held: H places a legal hold (kept from retention)\n", "dim")
        for note in inc.notes:
            notes.append(f"\n{str(note.get('time'))[:19]}Z {note.get('user')}", "dim")
            if note.get("trace_id"):
                notes.append(f" on {note['trace_id'][:12]}…", "dim")
            notes.append(f"\n  {note.get('text')}\n")
        self.query_one("#notes", Static).update(notes)

    def _current(self) -> Incident | None:
        return next((i for i in self.incidents if i.name == self.selected), None)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None and int(event.option.id) < len(self.incidents):
            self.paint(self.incidents[int(event.option.id)])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        inc = self._current()
        if inc is None:
            return
        pin: dict[str, Any] = inc.pins[int(str(event.row_key.value))]
        from .trace import TraceScreen

        self.aitrail.open(TraceScreen(pin["trace_id"], span_id=pin.get("span_id")))

    def action_note(self) -> None:
        self.aitrail.add_note(None, None, on_done=self.action_refresh)

    def action_new(self) -> None:
        def named(name: str | None) -> None:
            if name:
                self.aitrail.incident = name
                self.selected = name
                self.aitrail.add_note(None, None, on_done=self.action_refresh)

        self.app.push_screen(self.aitrail.prompt_screen("new incident name:"), named)

    def action_bundle(self) -> None:
        """A verifiable bundle of every trace pinned to this incident, its notes in
        timeline.md (docs/bundles.md)."""
        from .bundle_export import export_bundle

        inc = self._current()
        if inc is None or not inc.pins:
            self.notify("pin a trace to this incident first (i in a trace)")
            return
        slug = "".join(c if c.isalnum() else "-" for c in inc.name).strip("-")[:40]
        export_bundle(self, "incident", inc.name, None, f"{slug or 'incident'}.tar.gz")

    def action_hold(self) -> None:
        inc = self._current()
        if inc is None or not inc.pins:
            self.notify("pin the incident's traces first: a hold keeps its pinned traces")
            return
        name = inc.name

        def place(reason: str | None) -> None:
            if reason is None:
                return
            self.fetch("write", lambda c: c.hold_incident(name, reason), self._held)

        self.app.push_screen(self.aitrail.prompt_screen(
            f"legal hold on {name}: reason (logged)?", placeholder="e.g. postmortem"), place)

    def _held(self, hold: Hold) -> None:
        self.notify(f"legal hold {hold.id} placed on {len(hold.trace_ids)} trace(s)")
        self.action_refresh()

    def action_unpin(self) -> None:
        inc = self._current()
        table = self.query_one("#pins", DataTable)
        if inc is None or not inc.pins or not table.has_focus:
            return
        pin = inc.pins[table.cursor_row]
        name, tid, sid = inc.name, pin["trace_id"], pin.get("span_id")
        self.fetch("write", lambda c: c.workspace.unpin(name, tid, sid),
                   lambda _: self.action_refresh())
