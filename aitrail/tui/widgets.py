"""Widgets: vim-keyed lists, and the trace waterfall that renders only what is on screen."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import DataTable, OptionList

from . import marks


class VimDataTable(DataTable):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False, id="list.down"),
        Binding("k", "cursor_up", "Up", show=False, id="list.up"),
        Binding("g", "scroll_top", "First row", show=False, id="list.first"),
        Binding("G", "scroll_bottom", "Last row", show=False, id="list.last"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)


class VimOptionList(OptionList):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False, id="list.down"),
        Binding("k", "cursor_up", "Up", show=False, id="list.up"),
        Binding("g", "first", "First", show=False, id="list.first"),
        Binding("G", "last", "Last", show=False, id="list.last"),
    ]


@dataclass
class _Node:
    row: dict[str, Any]
    depth: int = 0
    children: list[int] = field(default_factory=list)


def _ts(t: datetime) -> float:
    return t.timestamp()


class WaterfallView(ScrollView, can_focus=True):
    """A collapsible span tree with a timing bar per span.

    Like Toolong's log view it never makes a widget per span: it keeps the tree as index
    lists and paints the visible lines on demand (`render_line`), so a 50,000-span trace
    costs one pass to index and then only what fits on screen.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j,down", "move(1)", "Down", show=False, id="trace.down"),
        Binding("k,up", "move(-1)", "Up", show=False, id="trace.up"),
        Binding("g,home", "first", "First span", show=False, id="trace.first"),
        Binding("G,end", "last", "Last span", show=False, id="trace.last"),
        Binding("pagedown,ctrl+f", "page(1)", "Page down", show=False, id="trace.page_down"),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False, id="trace.page_up"),
        Binding("space", "toggle", "Fold", id="trace.fold"),
        Binding("l,right", "expand", "Unfold", show=False, id="trace.unfold"),
        Binding("h,left", "collapse", "Fold/parent", show=False, id="trace.fold_parent"),
        Binding("E", "expand_all", "Unfold all", show=False, id="trace.unfold_all"),
        Binding("enter", "select", "Open span", id="trace.open_span"),
        Binding("x", "next_flagged", "Next error/verdict", id="trace.next_flagged"),
    ]
    # Traces larger than this open folded below the second level.
    FOLD_ABOVE = 2000
    cursor = reactive(0)

    class Highlighted(Message):
        def __init__(self, row: dict[str, Any]) -> None:
            self.row = row
            super().__init__()

    class Selected(Message):
        def __init__(self, row: dict[str, Any]) -> None:
            self.row = row
            super().__init__()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nodes: list[_Node] = []
        self.roots: list[int] = []
        self.collapsed: set[int] = set()
        self.shown: list[int] = []
        self.t0 = 0.0
        self.total = 1.0

    # -- data --------------------------------------------------------------------------------

    def set_spans(self, rows: list[dict[str, Any]]) -> None:
        rows = sorted(rows, key=lambda r: (r["start_time"], r["span_id"]))
        self.nodes = [_Node(r) for r in rows]
        index = {r["span_id"]: i for i, r in enumerate(rows)}
        self.roots = []
        for i, r in enumerate(rows):
            parent = index.get(r["parent_span_id"]) if r["parent_span_id"] else None
            if parent is None or parent == i:
                self.roots.append(i)
            else:
                self.nodes[parent].children.append(i)
        # depth by walking from the roots (iterative: deep agent loops must not recurse)
        stack = [(i, 0) for i in reversed(self.roots)]
        reached = 0
        while stack:
            i, d = stack.pop()
            self.nodes[i].depth = d
            reached += 1
            stack.extend((c, d + 1) for c in reversed(self.nodes[i].children))
        if reached < len(rows):  # a parent cycle: show those spans as roots rather than lose them
            seen = set()
            stack = list(self.roots)
            while stack:
                i = stack.pop()
                seen.add(i)
                stack.extend(self.nodes[i].children)
            for i in range(len(rows)):
                if i not in seen:
                    self.roots.append(i)
                    self.nodes[i].children = []
        starts = [_ts(r["start_time"]) for r in rows] or [0.0]
        ends = [_ts(r["end_time"]) for r in rows] or [1.0]
        self.t0 = min(starts)
        self.total = max(max(ends) - self.t0, 1e-6)
        self.collapsed = ({i for i, n in enumerate(self.nodes) if n.depth >= 1 and n.children}
                          if len(rows) > self.FOLD_ABOVE else set())
        self._relayout(keep=None)
        self.cursor = 0
        self._announce()

    def _relayout(self, keep: int | None) -> None:
        out: list[int] = []
        stack = list(reversed(self.roots))
        while stack:
            i = stack.pop()
            out.append(i)
            if i not in self.collapsed:
                stack.extend(reversed(self.nodes[i].children))
        self.shown = out
        self.virtual_size = Size(self.size.width or 80, len(out))
        if keep is not None and keep in out:
            self.cursor = out.index(keep)
        self.cursor = max(0, min(self.cursor, len(out) - 1))
        self.refresh()

    @property
    def current(self) -> dict[str, Any] | None:
        if not self.shown:
            return None
        return self.nodes[self.shown[self.cursor]].row

    def select_span(self, span_id: str) -> bool:
        """Move the cursor to a span, unfolding its ancestors."""
        target = next((i for i, n in enumerate(self.nodes) if n.row["span_id"] == span_id),
                      None)
        if target is None:
            return False
        parent_of = {c: i for i, n in enumerate(self.nodes) for c in n.children}
        p = parent_of.get(target)
        while p is not None:
            self.collapsed.discard(p)
            p = parent_of.get(p)
        self._relayout(keep=target)
        self._scroll_to_cursor()
        self._announce()
        return True

    # -- painting ----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width or self.size.width
        line = int(self.scroll_offset.y) + y
        if line >= len(self.shown):
            return Strip.blank(width, self.rich_style)
        i = self.shown[line]
        text = self._line_text(i, width)
        if line == self.cursor:
            text.stylize(Style(reverse=True) if self.has_focus else Style(bold=True,
                                                                             underline=True))
        segments = list(text.render(self.app.console))
        return Strip(segments).adjust_cell_length(width, self.rich_style).simplify()

    def _line_text(self, i: int, width: int) -> Text:
        node = self.nodes[i]
        r = node.row
        bar_w = max(10, min(40, width // 4))
        dur_w = 9
        name_w = max(10, width - bar_w - dur_w - 4)
        mark, mark_style = marks.span_mark(r)
        t = Text(no_wrap=True, overflow="crop")
        t.append(f"{mark:<2}", mark_style)
        fold = ("▸ " if i in self.collapsed else "▾ ") if node.children else "  "
        indent = "  " * min(node.depth, 20)
        tags = Text()
        if r.get("service_name") and node.depth == 0:
            tags.append(f" [{r['service_name']}]", "dim")
        for tag, style in marks.span_tags(r, kind_tag=False):
            tags.append(" ")
            tags.append(tag, style)
        if node.children and i in self.collapsed:
            tags.append(f" (+{len(node.children)})", "dim")
        kind = Text()
        for tag, style in marks.span_tags({"ai_kind": r.get("ai_kind"),
                                           "request_model": r.get("request_model"),
                                           "response_model": r.get("response_model"),
                                           "tool_name": r.get("tool_name")}):
            kind.append(" ")
            kind.append(tag, style)
        # the name gives way to the flags: a verdict or an error must stay visible
        head = len(indent) + len(fold)
        room = max(min(len(r["name"]), 18), name_w - head - tags.cell_len)
        name = Text(r["name"])
        if name.cell_len > room:
            name.truncate(room, overflow="ellipsis")
        label = Text(f"{indent}{fold}")
        label.append_text(name)
        label.append_text(tags)
        label.truncate(name_w, overflow="ellipsis")
        left = name_w - label.cell_len
        if kind.cell_len and left >= 4:
            kind.truncate(left, overflow="ellipsis")
            label.append_text(kind)
        label.truncate(name_w, pad=True)
        t.append_text(label)
        t.append(f" {marks.duration(r.get('duration_ms')):>{dur_w - 1}} ")
        t.append_text(self._bar(r, bar_w))
        return t

    def _bar(self, r: dict[str, Any], w: int) -> Text:
        start = (_ts(r["start_time"]) - self.t0) / self.total * w
        end = (_ts(r["end_time"]) - self.t0) / self.total * w
        a = max(0, min(w - 1, int(start)))
        b = max(a + 1, min(w, round(end)))
        style = "red" if r.get("status_code") == "error" else "cyan"
        bar = Text("│", "dim")
        bar.append(" " * a)
        bar.append("█" * (b - a), style)
        bar.append(" " * (w - b))
        return bar

    # -- keys --------------------------------------------------------------------------------

    def watch_cursor(self, _old: int, _new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        h = self.scrollable_content_region.height or 1
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + h:
            self.scroll_to(y=self.cursor - h + 1, animate=False)

    def _announce(self) -> None:
        if self.current is not None:
            self.post_message(self.Highlighted(self.current))

    def action_move(self, delta: int) -> None:
        if self.shown:
            self.cursor = max(0, min(len(self.shown) - 1, self.cursor + delta))
            self._announce()

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, (self.scrollable_content_region.height or 2) - 1))

    def action_first(self) -> None:
        self.cursor = 0
        self._announce()

    def action_last(self) -> None:
        self.cursor = max(0, len(self.shown) - 1)
        self._announce()

    def action_toggle(self) -> None:
        if not self.shown:
            return
        i = self.shown[self.cursor]
        if self.nodes[i].children:
            self.collapsed ^= {i}
            self._relayout(keep=i)

    def action_expand(self) -> None:
        if self.shown and self.shown[self.cursor] in self.collapsed:
            self.action_toggle()

    def action_collapse(self) -> None:
        if not self.shown:
            return
        i = self.shown[self.cursor]
        if self.nodes[i].children and i not in self.collapsed:
            self.action_toggle()
            return
        for j in range(self.cursor - 1, -1, -1):  # to the parent
            if i in self.nodes[self.shown[j]].children:
                self.cursor = j
                self._announce()
                return

    def action_expand_all(self) -> None:
        keep = self.shown[self.cursor] if self.shown else None
        self.collapsed = set()
        self._relayout(keep=keep)

    def action_select(self) -> None:
        if self.current is not None:
            self.post_message(self.Selected(self.current))

    def action_next_flagged(self) -> None:
        """The next span with an error or a non-allow verdict, unfolding as needed."""
        if not self.nodes:
            return
        order = sorted(range(len(self.nodes)), key=lambda i: (
            _ts(self.nodes[i].row["start_time"]), i))
        here = self.shown[self.cursor] if self.shown else -1
        pos = order.index(here) if here in order else -1
        for i in order[pos + 1:] + order[:pos + 1]:
            if marks.is_flagged(self.nodes[i].row):
                self.select_span(self.nodes[i].row["span_id"])
                return
        self.notify("no errors or restrictive verdicts in this trace")

    def on_click(self, event: Any) -> None:
        line = int(self.scroll_offset.y) + event.y
        if 0 <= line < len(self.shown):
            self.cursor = line
            self._announce()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.shown))
        self.refresh()

