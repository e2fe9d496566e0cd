"""Replay: the ordered steps of a change (or one trace), stepped with keys or played back
with the real time gaps shown (and compressed, so a 40-minute wait takes seconds)."""

from __future__ import annotations

import re
import textwrap
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from ..store.replay import Step
from . import marks
from .base import StoreScreen
from .widgets import VimOptionList

# Playing waits the real gap, at most this long, divided by the speed.
MAX_WAIT_S = 3.0
LABEL_STYLE = {"ASKED": "bold cyan", "RETRIEVED": "bold blue", "MODEL": "bold magenta",
               "TOOL": "bold yellow", "POLICY": "bold yellow", "REVIEW": "bold green",
               "CHANGE": "bold", "ERROR": "bold red"}


def gap_text(seconds: float) -> str:
    if seconds < 60:
        return f"+{seconds:.1f}s"
    if seconds < 3600:
        return f"+{seconds / 60:.1f}m"
    return f"+{seconds / 3600:.1f}h"


def step_flags(s: Step) -> list[tuple[str, str]]:
    """What a responder scans for: errors, verdict→enforced, reviews (words, not colour)."""
    flags = []
    if s.error:
        flags.append(("✗ ERROR", "bold red"))
    for k, v in s.details:
        if k == "decision":
            m = re.search(r"verdict (\S+?)(?:,|$| )(?:.*?enforced (\S+?)(?:,|$| ))?", v)
            if m:
                verdict, action = m.group(1), m.group(2)
                flags.append((f"[{verdict}→{action}]" if action and action != verdict
                              else f"[{verdict}]", "yellow"))
        elif k == "review":
            flags.append((f"[{v}]", "green"))
    return flags


def step_line(s: Step, trace_no: int, findings: list[str] | None = None) -> Text:
    """One line per step; the flags come before the title so a narrow screen keeps them."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{s.index:>3}. ")
    t.append(f"{s.time.strftime('%H:%M:%S')} ")
    t.append(f"{gap_text(s.gap_s) if s.index > 1 else '':>8} ", "dim")
    t.append(f"T{trace_no} ", "dim")
    t.append(f"{s.label:<9} ", LABEL_STYLE.get(s.label, "bold"))
    if findings:  # this step is evidence that a declaration did not hold
        t.append("! " + ",".join(findings) + " ", "bold red")
    for flag, style in step_flags(s):
        t.append(flag, style)
        t.append(" ")
    t.append(s.title)
    return t


def step_detail(s: Step, trace_no: int, n_traces: int, width: int = 100) -> Text:
    t = Text()
    t.append(f"step {s.index}: ", "bold")
    t.append(f"{s.label} ", LABEL_STYLE.get(s.label, "bold"))
    t.append(f"{s.title}  [{s.service or '?'}]\n", "bold")
    t.append(f"{marks.when(s.time)}  ({gap_text(s.gap_s)} after the previous step)  "
             f"trace {trace_no} of {n_traces}\n", "dim")
    room = max(20, width - 14)
    for k, v in s.details:
        t.append(f"{k:>12}: ", "bold cyan" if not k.startswith("decision") else "bold yellow")
        # a hanging indent, so wrapped values stay in their column
        lines = textwrap.wrap(str(v), room) or [""]
        t.append(lines[0] + "\n")
        for line in lines[1:]:
            t.append(" " * 14 + line + "\n")
    if s.error:
        t.append(f"{'ERROR':>12}: {s.error}\n", "bold red")
    t.append(f"{'span':>12}: {s.trace_id}/{s.span_id}\n", "dim")
    return t


class ReplayScreen(StoreScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "step(1)", "Next", id="replay.next"),
        Binding("p", "step(-1)", "Prev", id="replay.prev"),
        Binding("space", "play", "Play/pause", id="replay.play"),
        Binding("plus", "speed(2)", "Faster", show=False, id="replay.faster"),
        Binding("minus", "speed(0.5)", "Slower", show=False, id="replay.slower"),
        Binding("o", "open_span", "Open span", id="replay.open_span"),
        Binding("t", "open_trace", "Trace", id="replay.open_trace"),
        Binding("v", "pivot", "Pivot", show=False, id="replay.pivot"),
        Binding("i", "pin", "Pin", show=False, id="replay.pin"),
        Binding("N", "note", "Note", show=False, id="replay.note"),
        Binding("B", "bundle", "Bundle", show=False, id="replay.bundle"),
    ]
    DEFAULT_CSS = """
    ReplayScreen #title { height: 1; padding: 0 1; background: $primary-background; }
    ReplayScreen #steps { height: 40%; border: none; text-wrap: nowrap;
                          text-overflow: ellipsis; }
    ReplayScreen #status { height: 1; padding: 0 1; }
    ReplayScreen #detail-scroll { height: 1fr; padding: 0 1;
                                  border-top: solid $primary-background; }
    """

    def __init__(self, change_id: str | None = None, trace_id: str | None = None,
                 at: int = 0) -> None:
        super().__init__()
        self.change_id = change_id
        self.trace_id = trace_id
        self.steps: list[Step] = []
        self.rows: dict[str, dict[str, Any]] = {}
        self.trace_no: dict[str, int] = {}
        self.at = at
        self.playing = False
        self.speed = 1.0
        self.timer: Any = None

    @property
    def subject(self) -> str:
        return f"change {self.change_id}" if self.change_id else f"trace {self.trace_id}"

    def compose(self) -> ComposeResult:
        yield Static(f"replay of {self.subject} · loading…", id="title")
        yield VimOptionList(id="steps")
        yield Static("", id="status")
        with VerticalScroll(id="detail-scroll"):
            yield Static("", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        cid, tid = self.change_id, self.trace_id

        def load(c: Any) -> Any:
            steps, rows = c.replay_steps(change_id=cid, trace_id=tid)
            c.log_access("open_replay", self.subject, trace_id=tid, change_id=cid,
                         detail=f"{len(steps)} steps")
            return steps, rows

        self.fetch("replay", load, self.show, self.failed)
        self.query_one("#steps").focus()

    def reopen(self) -> ReplayScreen:
        return ReplayScreen(self.change_id, self.trace_id, self.at)

    def failed(self, message: str) -> None:
        self.query_one("#title", Static).update(f"replay of {self.subject}: {message}")

    def show(self, loaded: tuple[list[Step], list[dict[str, Any]]]) -> None:
        self.steps, rows = loaded
        self.rows = {r["span_id"]: r for r in rows}
        for s in self.steps:
            self.trace_no.setdefault(s.trace_id, len(self.trace_no) + 1)
        services = sorted({r["service_name"] for r in rows if r.get("service_name")})
        self.query_one("#title", Static).update(
            f"replay of {self.subject}: {len(self.steps)} steps across "
            f"{len(self.trace_no)} trace(s) ({', '.join(services)})")
        ol = self.query_one("#steps", OptionList)
        ol.clear_options()
        ol.add_options([Option(step_line(s, self.trace_no[s.trace_id]), id=str(i))
                        for i, s in enumerate(self.steps)])
        if self.steps:
            self.go(min(self.at, len(self.steps) - 1))
            self.fetch("marks", lambda c: c.finding_marks(), self.mark)
        else:
            self.query_one("#detail", Static).update(
                "No AI steps here: no span has an AI kind or an error. `t` is not needed: "
                "Esc goes back to the trace.")

    def mark(self, by_span: dict[str, list[str]]) -> None:
        """Steps that are evidence of a finding get `! rule` (once findings are known)."""
        if not any(s.span_id in by_span for s in self.steps):
            return
        ol = self.query_one("#steps", OptionList)
        at = ol.highlighted
        ol.clear_options()
        ol.add_options([Option(step_line(s, self.trace_no[s.trace_id], by_span.get(s.span_id)),
                               id=str(i)) for i, s in enumerate(self.steps)])
        if at is not None:
            ol.highlighted = at

    # -- stepping ----------------------------------------------------------------------------

    def go(self, i: int) -> None:
        if not self.steps:
            return
        self.at = max(0, min(len(self.steps) - 1, i))
        ol = self.query_one("#steps", OptionList)
        if ol.highlighted != self.at:
            ol.highlighted = self.at
        s = self.steps[self.at]
        self.query_one("#detail", Static).update(
            step_detail(s, self.trace_no[s.trace_id], len(self.trace_no),
                        max(40, self.app.size.width - 4)))
        self.query_one("#detail-scroll").scroll_home(animate=False)
        self._status()

    def _status(self, waiting: str = "") -> None:
        state = "▶ playing" if self.playing else "paused"
        text = (f"step {self.at + 1}/{len(self.steps)} · {state} ×{self.speed:g}"
                + (f" · {waiting}" if waiting else "")
                + " · n/p step · space play")
        self.query_one("#status", Static).update(text)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "steps" and event.option_index != self.at:
            self.go(event.option_index)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_open_span()

    def action_step(self, delta: int) -> None:
        self.go(self.at + delta)

    def action_play(self) -> None:
        self.playing = not self.playing
        if self.playing:
            if self.at >= len(self.steps) - 1:
                self.go(0)
            self._schedule()
        elif self.timer is not None:
            self.timer.stop()
            self.timer = None
            self._status()

    def _schedule(self) -> None:
        if not self.playing or self.at >= len(self.steps) - 1:
            self.playing = False
            self._status("end of replay" if self.steps else "")
            return
        gap = self.steps[self.at + 1].gap_s
        wait = min(gap, MAX_WAIT_S) / self.speed
        shown = f"next step in {wait:.1f}s (real gap {gap_text(gap)})"
        self._status(shown)
        self.timer = self.set_timer(max(wait, 0.05), self._advance)

    def _advance(self) -> None:
        self.timer = None
        if self.playing:
            self.go(self.at + 1)
            self._schedule()

    def action_speed(self, factor: float) -> None:
        self.speed = max(0.25, min(16.0, self.speed * factor))
        self._status()

    def action_open_span(self) -> None:
        if not self.steps:
            return
        row = self.rows.get(self.steps[self.at].span_id)
        if row is not None:
            from .aicall import SpanScreen

            self.aitrail.open(SpanScreen(row))

    def action_open_trace(self) -> None:
        if not self.steps:
            return
        s = self.steps[self.at]
        from .trace import TraceScreen

        self.aitrail.open(TraceScreen(s.trace_id, span_id=s.span_id))

    def _row(self) -> dict[str, Any] | None:
        if not self.steps:
            return None
        return self.rows.get(self.steps[self.at].span_id)

    def action_pivot(self) -> None:
        row = self._row()
        if row is not None:
            self.aitrail.pick_pivot(row)

    def action_pin(self) -> None:
        row = self._row()
        if row is not None:
            self.aitrail.pin(row["trace_id"], row["span_id"],
                             f"step {self.at + 1} {row['name']} [{row.get('service_name')}]")

    def action_note(self) -> None:
        row = self._row()
        self.aitrail.add_note(row["trace_id"] if row else None,
                              row["span_id"] if row else None)

    def action_bundle(self) -> None:
        """A verifiable bundle of the change (every trace that touched it), or of the one
        trace replayed, for a postmortem (docs/bundles.md)."""
        from .bundle_export import export_bundle

        if self.change_id:
            export_bundle(self, "change", self.change_id, None, f"{self.change_id}.tar.gz")
        elif self.trace_id:
            export_bundle(self, "trace", self.trace_id, None,
                          f"trace-{self.trace_id[:12]}.tar.gz")
