"""The app: one factory shared by `aitrail tui` and the tests, navigation with history,
and the workspace actions every screen offers (pin, note, pivot)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen, Screen

from ..store.errors import StoreError
from ..store.pivots import pivots_of
from .base import StoreScreen
from .client import StoreClient
from .help import HelpScreen
from .prompt import Prompt


class AitrailApp(App):
    TITLE = "aitrail"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Keys", id="app.help"),
        Binding("semicolon", "sql", "SQL", id="app.sql"),
        Binding("left_square_bracket,escape", "back", "Back", id="app.back"),
        Binding("right_square_bracket", "forward", "Forward", show=False, id="app.forward"),
        Binding("s", "search", "Search", show=False, id="app.search"),
        Binding("I", "incidents", "Incidents", show=False, id="app.incidents"),
        Binding("A", "access_log", "Access log", show=False, id="app.access_log"),
        Binding("exclamation_mark", "findings", "Findings", show=False, id="app.findings"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, store: str | Path, user: str | None = None,
                 incident: str | None = None,
                 features: dict[str, str] | None = None) -> None:
        super().__init__()
        self.client = StoreClient(store, user, features)
        self.incident = incident
        self.forward_stack: list[Callable[[], Screen | None]] = []
        self.change_ids: list[str] = []
        self._changes_requested = False

    def on_mount(self) -> None:
        from .search import SearchScreen

        self.push_screen(SearchScreen())

    def load_changes_once(self) -> None:
        """The change ids for `replay: ...` palette commands, fetched once after the first
        results are on screen (measured: 0.9-1.9 s on a 1M-span store, which would otherwise
        hold the store's lock ahead of the first search)."""
        if self._changes_requested:
            return
        self._changes_requested = True
        self.run_worker(self._load_changes, thread=True, group="changes",
                        exit_on_error=False)

    def _load_changes(self) -> None:
        try:
            self.change_ids = [r["change_id"] for r in self.client.changes().rows]
        except StoreError:
            self.change_ids = []

    def on_unmount(self) -> None:
        self.client.close()

    # -- navigation --------------------------------------------------------------------------

    def open(self, screen: Screen) -> None:
        """Go somewhere new: forward history no longer applies."""
        self.forward_stack.clear()
        self.push_screen(screen)

    def action_back(self) -> None:
        if isinstance(self.screen, ModalScreen):
            self.screen.dismiss(None)
            return
        if len(self.screen_stack) <= 2:  # the default screen and search stay
            return
        top = self.screen
        if isinstance(top, StoreScreen):
            again = top.reopen()
            if again is not None:
                self.forward_stack.append(lambda s=again: s)
        self.pop_screen()

    def action_forward(self) -> None:
        if not self.forward_stack:
            self.notify("nothing to go forward to")
            return
        screen = self.forward_stack.pop()()
        if screen is not None:
            self.push_screen(screen)

    def _go(self, screen: Screen) -> None:
        if type(self.screen) is type(screen):
            return
        self.open(screen)

    def action_search(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.forward_stack.clear()

    def action_sql(self) -> None:
        from .sql_console import SqlScreen

        self._go(SqlScreen())

    def action_incidents(self) -> None:
        from .incidents import IncidentsScreen

        self._go(IncidentsScreen())

    def action_access_log(self) -> None:
        from .audit import AccessLogScreen

        self._go(AccessLogScreen())

    def action_findings(self) -> None:
        from .findings import FindingsScreen

        self._go(FindingsScreen())

    def action_changes(self) -> None:
        from .changes import ChangesScreen

        self._go(ChangesScreen())

    def action_help(self) -> None:
        rows, seen = [], set()
        for key, active in self.screen.active_bindings.items():
            b = active.binding
            if (b.id, b.action) in seen:
                continue
            seen.add((b.id, b.action))
            keys = [k for k, a in self.screen.active_bindings.items()
                    if a.binding.id == b.id and a.binding.action == b.action] or [key]
            rows.append((", ".join(self.get_key_display(Binding(k, "")) for k in keys),
                         b.description or b.action, b.id or ""))
        rows.sort(key=lambda r: (not r[2], r[2].startswith("app."), r[2]))
        title = type(self.screen).__name__.removesuffix("Screen").lower() or "aitrail"
        self.push_screen(HelpScreen(title, rows))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("search: back to search", "the first screen, filters kept",
                            self.action_search)
        yield SystemCommand("sql: open console", "one read-only query (also `;`)",
                            self.action_sql)
        yield SystemCommand("changes: list changes", "every change the store knows",
                            self.action_changes)
        yield SystemCommand("findings: list findings", "where traces break the declared "
                            "AI change records (also !)", self.action_findings)
        yield SystemCommand("incident: open workspace", "pins and notes (also I)",
                            self.action_incidents)
        yield SystemCommand("incident: add note", "to the current incident",
                            lambda: self.add_note(None, None))
        yield SystemCommand("audit: open access log", "who opened what (also A)",
                            self.action_access_log)
        yield SystemCommand("help: show keys", "every key on this screen (also ?)",
                            self.action_help)
        yield SystemCommand("nav: back", "previous screen (also [ or Esc)", self.action_back)
        yield SystemCommand("nav: forward", "the screen you went back from (also ])",
                            self.action_forward)
        for change_id in self.change_ids[:200]:
            yield SystemCommand(f"replay: {change_id}", "step through this change",
                                lambda c=change_id: self._replay(c))

    def _replay(self, change_id: str) -> None:
        from .replay_view import ReplayScreen

        self.open(ReplayScreen(change_id=change_id))

    # -- workspace actions shared by screens -------------------------------------------------

    def prompt_screen(self, question: str, value: str = "", placeholder: str = "") -> Prompt:
        return Prompt(question, value, placeholder)

    def _with_incident(self, then: Callable[[str], None]) -> None:
        if self.incident:
            then(self.incident)
            return

        def named(name: str | None) -> None:
            if name:
                self.incident = name
                then(name)

        self.push_screen(self.prompt_screen(
            "incident to pin/note to (it is kept in the store for everyone):",
            placeholder="e.g. INC-2291 billing migration lock"), named)

    def pin(self, trace_id: str, span_id: str | None, label: str) -> None:
        def write(name: str) -> None:
            try:
                self.client.workspace.pin(name, trace_id, span_id, label)
            except (StoreError, OSError) as e:
                self.notify(f"pin failed: {e}", severity="error")
                return
            self.notify(f"pinned {label} to incident {name}")

        self._with_incident(write)

    def add_note(self, trace_id: str | None, span_id: str | None,
                 on_done: Callable[[], None] | None = None) -> None:
        def ask(name: str) -> None:
            def write(text: str | None) -> None:
                if not text:
                    return
                try:
                    self.client.workspace.note(name, text, trace_id, span_id)
                except (StoreError, OSError) as e:
                    self.notify(f"note failed: {e}", severity="error")
                    return
                self.notify(f"note added to incident {name}")
                if on_done is not None:
                    on_done()

            self.push_screen(self.prompt_screen(f"note for incident {name}:"), write)

        self._with_incident(ask)

    def pick_pivot(self, row: dict[str, Any]) -> None:
        from .pivot import PivotPicker, PivotScreen

        pivots = pivots_of(row)
        if not pivots:
            self.notify("this span carries no value to pivot on")
            return

        def chosen(p: Any) -> None:
            if p is not None:
                self.open(PivotScreen(p))

        self.push_screen(PivotPicker(pivots), chosen)


def make_app(store: str | Path, user: str | None = None,
             incident: str | None = None,
             features: dict[str, str] | None = None) -> AitrailApp:
    """The one factory: `aitrail tui` and the tests build the app the same way. `features`
    is [features] of aitrail.toml (which service runs which declared feature)."""
    return AitrailApp(store, user=user, incident=incident, features=features)
