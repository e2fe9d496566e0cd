"""`e` on the search screen: one input per filter, for those who prefer a form to the bar."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from . import filters

FIELDS = (("text", "free text", "words in prompts, outputs, documents, tool calls"),
          ("since", "since", "ISO time or age: 2026-11-10, 6h, 7d"),
          ("until", "until", "ISO time or age"),
          ("tenant", "tenant", ""), ("service", "service", "service.name"),
          ("model", "model", "request or response model"),
          ("verdict", "verdict", "allow, deny, review, modify"),
          ("reviewer", "reviewer", ""), ("change", "change", "change id"),
          ("user", "user", "end user id"),
          ("kind", "kind", "llm, retrieval, tool, guardrail, review, change, ..."))


class FilterForm(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel", id="filters.cancel"),
        Binding("ctrl+s", "apply", "Search", id="filters.apply"),
    ]
    DEFAULT_CSS = """
    FilterForm { align: center middle; }
    FilterForm > Vertical { width: 78; max-width: 100%; height: auto; max-height: 100%;
                            border: round $primary; background: $surface; padding: 0 1; }
    FilterForm Horizontal { height: 1; }
    FilterForm Label { width: 11; }
    FilterForm Input { height: 1; border: none; padding: 0; width: 1fr; }
    FilterForm Input:focus { border: none; background: $boost; text-style: bold; }
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self.values = filters.to_fields(text)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("search filters · Enter or ctrl+s searches · Esc cancels")
            for key, label, hint in FIELDS:
                with Horizontal():
                    yield Label(label)
                    yield Input(self.values.get(key, ""), placeholder=hint, id=f"f-{key}")

    def on_mount(self) -> None:
        self.query_one("#f-text").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_apply()

    def action_apply(self) -> None:
        values = {key: self.query_one(f"#f-{key}", Input).value for key, _, _ in FIELDS}
        self.dismiss(filters.from_fields(values))
