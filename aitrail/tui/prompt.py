"""A one-line question in a modal (incident name, note text)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class Prompt(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel", id="prompt.cancel"),
    ]
    DEFAULT_CSS = """
    Prompt { align: center middle; }
    Prompt > Vertical { width: 76; max-width: 100%; height: auto; border: round $primary;
                        background: $surface; padding: 0 1; }
    """

    def __init__(self, question: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question)
            yield Input(self.value, placeholder=self.placeholder, id="answer")
            yield Static("Enter: ok · Esc: cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#answer").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)
