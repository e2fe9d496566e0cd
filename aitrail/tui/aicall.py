"""One span read as an AI call: what the model was told and shown, what it said, what
policy decided, who reviewed it, and the raw attributes one key away."""

from __future__ import annotations

import textwrap
from typing import Any, ClassVar

import orjson
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from ..store.pivots import redaction_entries
from . import marks
from .base import StoreScreen

AI_CALL_KINDS = ("llm", "embedding", "agent", "tool", "retrieval", "rerank", "guardrail",
                 "review", "change")
REDACTION_MARKERS = ("[REDACTED", "<redacted", "***REDACTED")
MAX_REDACTIONS_SHOWN = 40  # a resource's redactions repeat on each of its spans
WIDTH = 100  # wrap width when the screen's is not known


def _json(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        parsed = _json(value)
        if parsed is value or isinstance(parsed, str):
            return value
        value = parsed
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _wrap(out: Text, text: str, indent: str, width: int, style: str = "") -> None:
    """Text wrapped to the screen with a hanging indent (a terminal would wrap to column 0)."""
    room = max(20, width - len(indent))
    for line in str(text).splitlines() or [""]:
        pieces = textwrap.wrap(line, room, break_long_words=True, replace_whitespace=False,
                               drop_whitespace=True) or [""]
        for piece in pieces:
            out.append(f"{indent}{piece}\n", style)


def _parts(parts: Any, out: Text, indent: str = "    ", width: int = WIDTH) -> None:
    if not isinstance(parts, list):
        _wrap(out, _pretty(parts), indent, width)
        return
    for p in parts:
        if not isinstance(p, dict):
            _wrap(out, _pretty(p), indent, width)
            continue
        t = p.get("type")
        if t in ("text", "reasoning"):
            label = "(reasoning) " if t == "reasoning" else ""
            _wrap(out, f"{label}{p.get('content', '')}", indent, width)
        elif t == "tool_call":
            out.append(f"{indent}→ tool call {p.get('name')}", "bold magenta")
            if p.get("id"):
                out.append(f" (id {p['id']})", "dim")
            out.append("\n")
            args = _pretty(p.get("arguments") if p.get("arguments") is not None else {})
            _wrap(out, args, indent + "    ", width)
        elif t == "tool_call_response":
            out.append(f"{indent}← tool result", "bold magenta")
            if p.get("id"):
                out.append(f" (id {p['id']})", "dim")
            out.append("\n")
            _wrap(out, _pretty(p.get("response")), indent + "    ", width)
        else:
            _wrap(out, _pretty(p), indent, width)


def _messages(value: Any, out: Text, width: int) -> None:
    msgs = _json(value)
    if not isinstance(msgs, list):
        _wrap(out, _pretty(msgs), "  ", width)
        return
    for m in msgs:
        if not isinstance(m, dict):
            _wrap(out, _pretty(m), "  ", width)
            continue
        role = str(m.get("role") or "?")
        out.append(f"  {role}", "bold cyan")
        if m.get("finish_reason"):
            out.append(f" (finish: {m['finish_reason']})", "dim")
        if m.get("name"):
            out.append(f" ({m['name']})", "dim")
        out.append("\n")
        _parts(m.get("parts"), out, "    ", width)


def _heading(out: Text, title: str) -> None:
    out.append(f"\n── {title} ", "bold")
    out.append("─" * max(2, 60 - len(title)) + "\n", "dim")


def redactions(row: dict[str, Any]) -> list[str]:
    """Columns whose stored text carries a redaction marker (ours, or another tool's)."""
    found = []
    for col in ("system_instructions", "input_messages", "output_messages", "documents",
                "tool_arguments", "tool_result", "attributes"):
        v = row.get(col)
        if isinstance(v, str) and any(m.lower() in v.lower() for m in REDACTION_MARKERS):
            found.append(col)
    return found


def _redactions(out: Text, row: dict[str, Any], width: int) -> None:
    """What aitrail masked in this span (its `redactions` record), else the markers other
    tools left in its text."""
    entries = redaction_entries(row)
    if not entries:
        red = redactions(row)
        out.append("  " + (f"redaction markers in: {', '.join(red)}" if red
                           else "none recorded on this span") + "\n")
        return
    secrets = len({e.get("fp") for e in entries if e.get("fp")})
    _wrap(out, f"{secrets} secret(s) masked in {len(entries)} place(s) · v: pivot on a "
          "fingerprint to see where else it appeared", "  ", width, "dim")
    for e in entries[:MAX_REDACTIONS_SHOWN]:
        out.append(f"  {e.get('rule') or '?'}", "bold yellow")
        out.append(f"  fp {e.get('fp') or '-'}\n")
        _wrap(out, str(e.get("path") or "?"), "    ", width, "dim")
    if len(entries) > MAX_REDACTIONS_SHOWN:
        out.append(f"  … {len(entries) - MAX_REDACTIONS_SHOWN} more (r: raw columns)\n",
                   "dim")


def span_text(row: dict[str, Any], width: int = WIDTH) -> Text:
    """The readable AI-call view of one `spans` row (pure: tests call it directly)."""
    r = row
    out = Text()
    kind = r.get("ai_kind") or "span"
    out.append(f"{kind.upper()} ", "bold magenta")
    out.append(f"{r['name']}", "bold")
    out.append(f"  [{r.get('service_name') or '?'}]\n")
    out.append(f"{marks.when(r['start_time'])}  {marks.duration(r.get('duration_ms'))}  "
               f"status {r.get('status_code')}")
    out.append("\n")
    if r.get("status_code") == "error":
        _wrap(out, f"✗ ERROR {r.get('status_message') or r.get('error_type') or ''}", "  ",
              width, "bold red")
    facts = [("model", " → ".join(x for x in (r.get("request_model"), r.get("response_model"))
                                  if x) or None),
             ("provider", r.get("provider")), ("operation", r.get("operation")),
             ("tokens", None if r.get("input_tokens") is None and r.get("output_tokens")
              is None else f"{r.get('input_tokens')} in / {r.get('output_tokens')} out"),
             ("user", r.get("user_id")), ("session", r.get("session_id")),
             ("agent", r.get("agent_name")), ("change", r.get("change_id")),
             ("convention", r.get("source_convention")),
             ("trace/span", f"{r['trace_id']}/{r['span_id']}")]
    for k, v in facts:
        if v:
            out.append(f"  {k:>11}: ", "dim")
            out.append(f"{v}\n")
    if r.get("system_instructions"):
        _heading(out, "system instructions")
        _parts(_json(r["system_instructions"]), out, "  ", width)
    if r.get("input_messages"):
        _heading(out, "input messages")
        _messages(r["input_messages"], out, width)
    if r.get("retrieval_query"):
        _heading(out, "retrieval query")
        _wrap(out, r["retrieval_query"], "  ", width)
    docs = _json(r.get("documents"))
    if docs:
        _heading(out, "retrieved documents")
        for rank, d in enumerate(docs if isinstance(docs, list) else [docs], start=1):
            if not isinstance(d, dict):
                out.append(f"  {rank}. {_pretty(d)}\n")
                continue
            meta = d.get("metadata") if isinstance(d.get("metadata"), dict) else {}
            source = (d.get("source") or meta.get("source") or d.get("uri") or meta.get("url")
                      or r.get("data_source") or "?")
            out.append(f"  #{rank} ", "bold")
            out.append(f"{d.get('id')}", "bold cyan")
            where = f"source {source}  score {d.get('score')}"
            if len(str(d.get("id"))) + len(where) + 8 > width:
                out.append("\n")
                _wrap(out, where, "     ", width)
            else:
                out.append(f"  {where}\n")
            _wrap(out, str(d.get("content") or ""), "      ", width)
    if r.get("tool_name") or r.get("tool_arguments") or r.get("tool_result"):
        _heading(out, f"tool {r.get('tool_name') or ''}".strip())
        if r.get("tool_call_id"):
            out.append(f"  call id {r['tool_call_id']}\n", "dim")
        if r.get("tool_arguments"):
            out.append("  arguments:\n", "bold")
            _wrap(out, _pretty(r["tool_arguments"]), "    ", width)
        if r.get("tool_result"):
            out.append("  result:\n", "bold")
            _wrap(out, _pretty(r["tool_result"]), "    ", width)
    if r.get("output_messages"):
        _heading(out, "output")
        _messages(r["output_messages"], out, width)
    decisions = marks.decisions(r)
    if decisions:
        _heading(out, "decisions (verdict = what policy said; enforced = what was done)")
        for d in decisions:
            verdict = d.get("verdict") or d.get("native_verdict") or "?"
            policy = d.get("policy_id") or d.get("component") or d.get("kind") or "?"
            if d.get("policy_version"):
                policy += f" {d['policy_version']}"
            out.append(f"  {d.get('kind') or '?':<9} {policy}: ")
            out.append(f"verdict {verdict}", marks.VERDICT_STYLE.get(verdict, "bold"))
            action = d.get("action")
            out.append(f", enforced {action if action is not None else '(not recorded)'}")
            if action is not None and verdict in ("deny", "review") and action in (
                    "none", "allow"):
                out.append("\n            ⚠ GAP: verdict not enforced", "bold red")
            out.append("\n")
            for key in ("rule", "reason", "actor", "native_verdict", "source"):
                if d.get(key):
                    _wrap(out, f"{key}: {d[key]}", "            ", width, "dim")
    if r.get("reviewer") or r.get("review_decision") or r.get("review_required"):
        _heading(out, "review")
        out.append(f"  reviewer {r.get('reviewer') or '(none)'}: "
                   f"{r.get('review_decision') or '?'}"
                   f"{'  (review required)' if r.get('review_required') else ''}\n")
    if r.get("change_id") and (r.get("change_action") or r.get("change_kind")):
        _heading(out, "change")
        out.append("  " + " ".join(str(x) for x in (
            r.get("change_kind"), r.get("change_action"), r.get("change_target")) if x) + "\n")
        if r.get("change_url"):
            out.append(f"  {r['change_url']}\n")
    _heading(out, "redactions")
    _redactions(out, r, width)
    out.append("\nr: raw attributes · v: pivot on a value · i: pin · n: note\n", "dim")
    return out


def raw_text(row: dict[str, Any]) -> Text:
    out = Text()
    for col in ("attributes", "resource", "events", "links", "feature_flags"):
        value = _json(row.get(col))
        if value in (None, [], {}):
            continue
        _heading(out, col)
        out.append(_pretty(value) + "\n")
    _heading(out, "all columns")
    for k, v in row.items():
        if k in ("attributes", "resource", "events", "links") or v is None:
            continue
        out.append(f"  {k}: ", "dim")
        out.append(f"{marks.cell(v, 200)}\n")
    out.append("\nr: back to the AI call view\n", "dim")
    return out


class SpanScreen(StoreScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "raw", "Raw", id="span.raw"),
        Binding("v", "pivot", "Pivot", id="span.pivot"),
        Binding("t", "trace", "Trace", id="span.trace"),
        Binding("i", "pin", "Pin", id="span.pin"),
        Binding("n", "note", "Note", id="span.note"),
        Binding("j,down", "scroll(1)", "Down", show=False, id="span.down"),
        Binding("k,up", "scroll(-1)", "Up", show=False, id="span.up"),
        Binding("g,home", "top", "Top", show=False, id="span.top"),
        Binding("G,end", "bottom", "Bottom", show=False, id="span.bottom"),
    ]
    DEFAULT_CSS = """
    SpanScreen #body { padding: 0 1; }
    """

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row
        self.raw = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="scroll"):
            yield Static(span_text(self.row, self._width()), id="body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#scroll").focus()
        if self.row.get("ai_kind") in AI_CALL_KINDS:
            r = self.row
            self.fetch("audit", lambda c: c.log_access(
                "open_ai_call", f"{r.get('ai_kind')} {r['name']}", trace_id=r["trace_id"],
                span_id=r["span_id"], change_id=r.get("change_id")), lambda _: None)

    def reopen(self) -> SpanScreen:
        return SpanScreen(self.row)

    def _width(self) -> int:
        return max(40, self.app.size.width - 4)  # padding and the scrollbar

    def on_resize(self) -> None:
        for body in self.query("#body").results(Static):
            if not self.raw:
                body.update(span_text(self.row, self._width()))

    def action_raw(self) -> None:
        self.raw = not self.raw
        self.query_one("#body", Static).update(raw_text(self.row) if self.raw
                                               else span_text(self.row, self._width()))
        self.query_one("#scroll").scroll_home(animate=False)

    def action_scroll(self, delta: int) -> None:
        self.query_one("#scroll").scroll_relative(y=delta, animate=False)

    def action_top(self) -> None:
        self.query_one("#scroll").scroll_home(animate=False)

    def action_bottom(self) -> None:
        self.query_one("#scroll").scroll_end(animate=False)

    def action_pivot(self) -> None:
        self.aitrail.pick_pivot(self.row)

    def action_trace(self) -> None:
        from .trace import TraceScreen

        self.aitrail.open(TraceScreen(self.row["trace_id"], self.row.get("tenant"),
                                      self.row["span_id"]))

    def action_pin(self) -> None:
        r = self.row
        self.aitrail.pin(r["trace_id"], r["span_id"],
                         f"{r['name']} [{r.get('service_name') or '?'}]")

    def action_note(self) -> None:
        self.aitrail.add_note(self.row["trace_id"], self.row["span_id"])
