"""One trace: the waterfall, a summary of the highlighted span, and the ways out of it."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Static

from ..store.text_index import row_matches, words
from . import marks
from .base import StoreScreen
from .widgets import WaterfallView

# Follow mode looks for new spans this often.
FOLLOW_S = 2.0


def first_match(rows: list[dict[str, Any]], text: str) -> str | None:
    """The first span (in time) whose searchable text holds `text`, as search matched it."""
    ws = words(text)
    for r in sorted(rows, key=lambda r: r["start_time"]):
        if row_matches(r, ws):
            return r["span_id"]
    return None


class TraceScreen(StoreScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("R", "replay", "Replay", id="trace.replay"),
        Binding("v", "pivot", "Pivot", id="trace.pivot"),
        Binding("i", "pin", "Pin", id="trace.pin"),
        Binding("n", "note", "Note", id="trace.note"),
        Binding("X", "export", "Export", show=False, id="trace.export"),
        Binding("B", "bundle", "Bundle", show=False, id="trace.bundle"),
        Binding("F", "follow", "Follow", show=False, id="trace.follow"),
    ]
    DEFAULT_CSS = """
    TraceScreen #title { height: 1; padding: 0 1; background: $primary-background; }
    TraceScreen #waterfall { height: 1fr; }
    TraceScreen #detail { height: 4; padding: 0 1; border-top: solid $primary-background; }
    """

    def __init__(self, trace_id: str, tenant: str | None = None,
                 span_id: str | None = None, find_text: str | None = None) -> None:
        super().__init__()
        self.trace_id = trace_id
        self.tenant = tenant
        self.span_id = span_id
        self.find_text = find_text
        self.rows: list[dict[str, Any]] = []
        self.follow_timer: Any = None

    def compose(self) -> ComposeResult:
        yield Static(f"trace {self.trace_id} · loading…", id="title")
        yield WaterfallView(id="waterfall")
        yield Static("", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.load()
        self.query_one(WaterfallView).focus()

    def reopen(self) -> TraceScreen:
        view = self.query_one(WaterfallView)
        current = view.current
        return TraceScreen(self.trace_id, self.tenant,
                           current["span_id"] if current else self.span_id)

    def load(self) -> None:
        tid, tenant = self.trace_id, self.tenant
        self.fetch("trace", lambda c: c.trace(tid, tenant).rows, self.show, self.failed)

    def failed(self, message: str) -> None:
        self.query_one("#title", Static).update(f"trace {self.trace_id}: {message}")

    def show(self, rows: list[dict[str, Any]]) -> None:
        view = self.query_one(WaterfallView)
        keep = view.current["span_id"] if (self.rows and view.current) else self.span_id
        self.rows = rows
        view.set_spans(rows)
        if not keep and self.find_text:
            keep = first_match(rows, self.find_text)
        if keep:
            view.select_span(keep)
        errors = sum(r.get("status_code") == "error" for r in rows)
        verdicts = sorted({r["policy_verdict"] for r in rows if r.get("policy_verdict")})
        services = sorted({r["service_name"] for r in rows if r.get("service_name")})
        changes = sorted({r["change_id"] for r in rows if r.get("change_id")})
        dur = (max(r["end_time"] for r in rows) - min(r["start_time"] for r in rows))
        parts = [f"trace {self.trace_id[:16]}…", f"{len(rows)} spans",
                 marks.duration(dur.total_seconds() * 1000), ", ".join(services)]
        if errors:
            parts.append(f"✗ {errors} ERROR")
        if verdicts:
            parts.append("verdicts: " + ", ".join(verdicts))
        if changes:
            parts.append("change " + ", ".join(changes))
        self.query_one("#title", Static).update(" · ".join(parts))
        if not any("findings" in r for r in rows):
            self.fetch("marks", lambda c: c.finding_marks(), self.mark)

    def mark(self, by_span: dict[str, list[str]]) -> None:
        """Spans that are evidence of a finding get `! rule` (once findings are known)."""
        rows = [{**r, "findings": by_span.get(r["span_id"], [])} for r in self.rows]
        if any(r["findings"] for r in rows):
            self.show(rows)

    def on_waterfall_view_highlighted(self, event: WaterfallView.Highlighted) -> None:
        r = event.row
        lines = [f"{r['name']}  [{r.get('service_name') or '?'}]  "
                 f"{marks.when(r['start_time'])}  {marks.duration(r.get('duration_ms'))}  "
                 f"status {r.get('status_code')}"]
        tags = " ".join(t for t, _ in marks.span_tags(r))
        if tags:
            lines.append(tags)
        ids = f"span {r['span_id']}"
        if r.get("user_id"):
            ids += f" · user {r['user_id']}"
        if r.get("change_id"):
            ids += f" · change {r['change_id']}"
        lines.append(ids + " · Enter: open")
        self.query_one("#detail", Static).update("\n".join(lines))

    def on_waterfall_view_selected(self, event: WaterfallView.Selected) -> None:
        from .aicall import SpanScreen

        self.aitrail.open(SpanScreen(event.row))

    # -- actions -----------------------------------------------------------------------------

    def _current(self) -> dict[str, Any] | None:
        return self.query_one(WaterfallView).current

    def action_replay(self) -> None:
        from .replay_view import ReplayScreen

        changes = sorted({r["change_id"] for r in self.rows if r.get("change_id")})
        if changes:
            self.aitrail.open(ReplayScreen(change_id=changes[0]))
        else:
            self.aitrail.open(ReplayScreen(trace_id=self.trace_id))

    def action_pivot(self) -> None:
        row = self._current()
        if row is not None:
            self.aitrail.pick_pivot(row)

    def action_pin(self) -> None:
        row = self._current()
        if row is not None:
            self.aitrail.pin(row["trace_id"], row["span_id"],
                             f"{row['name']} [{row.get('service_name') or '?'}]")

    def action_note(self) -> None:
        row = self._current()
        self.aitrail.add_note(self.trace_id, row["span_id"] if row else None)

    def action_export(self) -> None:
        """The trace as an OTLP/JSON file any OTLP tool (and `aitrail ingest`) reads."""
        tid, tenant = self.trace_id, self.tenant

        def write(path: str | None) -> None:
            if not path:
                return
            self.fetch("export", lambda c: c.export_trace(tid, path, tenant),
                       lambda n: self.notify(f"exported {n} spans to {path}"),
                       lambda msg: self.notify(f"export failed: {msg}", severity="error"))

        self.app.push_screen(self.aitrail.prompt_screen(
            "export this trace as OTLP/JSON to:", f"trace-{tid}.otlp.jsonl"), write)

    def action_bundle(self) -> None:
        """A verifiable bundle of this trace (docs/bundles.md), for a postmortem."""
        from .bundle_export import export_bundle

        export_bundle(self, "trace", self.trace_id, self.tenant,
                      f"trace-{self.trace_id[:12]}.tar.gz")

    def action_follow(self) -> None:
        if self.follow_timer is None:
            self.follow_timer = self.set_interval(FOLLOW_S, self.load)
            self.notify("follow: new spans of this trace appear every 2 s")
        else:
            self.follow_timer.stop()
            self.follow_timer = None
            self.notify("follow: off")
