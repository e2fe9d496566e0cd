"""`?`: every key that works here, with what it does and its binding id (for keymaps)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from .widgets import VimDataTable

GLOBAL_HELP = ("ctrl+p: command palette (commands read `area: action`) · [ / Esc: back · "
               "]: forward · q: quit")


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss(None)", "Close", id="help.close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 90%; height: 90%; border: round $primary;
                            background: $surface; }
    HelpScreen #keys { height: 1fr; }
    """

    def __init__(self, title: str, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"keys: {self.title_text}   (Esc closes)")
            yield VimDataTable(id="keys")
            yield Static(GLOBAL_HELP)

    def on_mount(self) -> None:
        table = self.query_one("#keys", DataTable)
        table.add_columns("key", "does", "binding id")
        for row in self.rows:
            table.add_row(*row)
        table.focus()
