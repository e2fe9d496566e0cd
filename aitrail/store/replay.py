"""The ordered steps of an AI-influenced change, built from its spans.

Pure functions over rows of the `spans` view, so the CLI prints them and the TUI steps
through them from the same list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

# ai_kind -> the step's label, in the words a responder uses.
STEP_LABELS = {
    "agent": "ASKED", "retrieval": "RETRIEVED", "rerank": "RERANKED", "llm": "MODEL",
    "embedding": "EMBEDDED", "tool": "TOOL", "guardrail": "POLICY", "review": "REVIEW",
    "change": "CHANGE",
}


@dataclass
class Step:
    index: int
    time: datetime
    gap_s: float
    trace_id: str
    span_id: str
    service: str | None
    label: str
    title: str
    details: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "time": self.time.isoformat(), "gap_s": self.gap_s,
                "trace_id": self.trace_id, "span_id": self.span_id, "service": self.service,
                "label": self.label, "title": self.title,
                "details": [{"field": k, "value": v} for k, v in self.details],
                "error": self.error}


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _short(value: Any, limit: int = 400) -> str:
    s = value if isinstance(value, str) else orjson.dumps(value).decode()
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def render_parts(parts: Any) -> str:
    """OTel message parts as one readable line."""
    if not isinstance(parts, list):
        return _short(parts)
    out = []
    for p in parts:
        if not isinstance(p, dict):
            out.append(_short(p))
            continue
        t = p.get("type")
        if t in ("text", "reasoning"):
            out.append(str(p.get("content", "")))
        elif t == "tool_call":
            out.append(f"→ {p.get('name')}({_short(p.get('arguments') or {}, 200)})")
        elif t == "tool_call_response":
            out.append(f"← {_short(p.get('response'), 200)}")
        elif t == "uri":
            out.append(f"[{p.get('modality')}: {p.get('uri')}]")
        else:
            out.append(_short(p, 200))
    return _short(" ".join(out))


def render_messages(text: str | None) -> list[tuple[str, str]]:
    msgs = _json(text)
    if isinstance(msgs, str):
        return [("text", _short(msgs))]
    lines = []
    for msg in msgs or ():
        if isinstance(msg, dict):
            lines.append((str(msg.get("role") or "?"), render_parts(msg.get("parts"))))
        else:
            lines.append(("?", _short(msg)))
    return lines


def _step_for(row: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]]] | None:
    kind = row.get("ai_kind")
    d: list[tuple[str, str]] = []
    if kind is None:
        if row.get("status_code") != "error":
            return None
        return "ERROR", row["name"], d
    label = STEP_LABELS.get(kind, kind.upper())
    title = row["name"]
    if kind in ("llm", "embedding"):
        model = row.get("response_model") or row.get("request_model")
        title = f"{row.get('provider') or '?'} / {model or '?'}"
        if row.get("system_instructions"):
            d.append(("system", render_parts(_json(row["system_instructions"]))))
        d += [(f"in:{role}", text) for role, text in render_messages(row.get("input_messages"))]
        d += [(f"out:{role}", text)
              for role, text in render_messages(row.get("output_messages"))]
        if row.get("input_tokens") is not None or row.get("output_tokens") is not None:
            tin, tout = row.get("input_tokens"), row.get("output_tokens")
            d.append(("tokens", f"{'?' if tin is None else tin} in / "
                      f"{'?' if tout is None else tout} out"))
    elif kind in ("retrieval", "rerank"):
        if row.get("retrieval_query"):
            d.append(("query", _short(row["retrieval_query"])))
        docs = _json(row.get("documents"))
        for rank, doc in enumerate(docs if isinstance(docs, list) else (), start=1):
            if not isinstance(doc, dict):
                continue
            meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
            source = doc.get("source") or meta.get("source") or row.get("data_source") or "?"
            d.append((f"doc {rank}", f"{doc.get('id')} (source {source}, score "
                      f"{doc.get('score')}): {_short(doc.get('content') or '', 200)}"))
    elif kind == "tool":
        title = row.get("tool_name") or row["name"]
        if row.get("tool_arguments"):
            d.append(("arguments", _short(row["tool_arguments"])))
        if row.get("tool_result"):
            d.append(("result", _short(row["tool_result"])))
    elif kind == "agent":
        title = row.get("agent_name") or row["name"]
        d += [(f"in:{role}", text) for role, text in render_messages(row.get("input_messages"))]
    decisions = _json(row.get("decisions"))
    for dec in decisions if isinstance(decisions, list) else ():
        if not isinstance(dec, dict) or dec.get("kind") == "review":
            continue
        policy = f"{dec.get('policy_id') or dec.get('component') or '?'}"
        if dec.get("policy_version"):
            policy += f" {dec['policy_version']}"
        text = f"{policy}: verdict {dec.get('verdict') or dec.get('native_verdict')}"
        if dec.get("action") is not None:
            text += f", enforced {dec['action']}"
        if dec.get("rule"):
            text += f", rule {dec['rule']}"
        if dec.get("reason"):
            text += f" — {dec['reason']}"
        d.append(("decision", text))
    if row.get("reviewer") or row.get("review_decision"):
        d.append(("review", f"{row.get('reviewer') or '?'}: {row.get('review_decision') or '?'}"))
    if row.get("change_action") or (kind == "change"):
        d.append(("change", " ".join(str(x) for x in (
            row.get("change_kind"), row.get("change_action"), row.get("change_target"))
            if x)))
        if row.get("change_url"):
            d.append(("url", row["change_url"]))
    return label, title, d


def _drop_repeated_history(details: list[tuple[str, str]], seen: list[tuple[str, str]],
                           at_step: int) -> list[tuple[str, str]]:
    """An agent loop resends the whole conversation on every model call; show what is new
    since the previous call of the same trace and say how much was left out."""
    convo = [d for d in details if d[0] == "system" or d[0].startswith("in:")]
    n = 0
    while n < len(convo) and n < len(seen) and convo[n] == seen[n]:
        n += 1
    if n == 0:
        return details
    rest = [d for d in details if d not in convo[:n]]
    return [("context", f"{n} earlier message(s) as in step {at_step}"), *rest]


def build_steps(rows: list[dict[str, Any]]) -> list[Step]:
    """Rows of the `spans` view (any order) -> replay steps in time order."""
    rows = sorted(rows, key=lambda r: (r["start_time"], r["trace_id"], r["span_id"]))
    steps: list[Step] = []
    prev: datetime | None = None
    history: dict[str, tuple[int, list[tuple[str, str]]]] = {}
    for row in rows:
        made = _step_for(row)
        if made is None:
            continue
        label, title, details = made
        if row.get("ai_kind") == "llm":
            full = details
            if row["trace_id"] in history:
                at, seen = history[row["trace_id"]]
                details = _drop_repeated_history(details, seen, at)
            # What the next call would resend: this call's input, then its output.
            sent = [d for d in full if d[0] == "system" or d[0].startswith("in:")]
            sent += [("in:" + k[4:], v) for k, v in full if k.startswith("out:")]
            history[row["trace_id"]] = (len(steps) + 1, sent)
        t = row["start_time"]
        gap = (t - prev).total_seconds() if prev is not None else 0.0
        prev = t
        error = None
        if row.get("status_code") == "error":
            error = row.get("status_message") or row.get("error_type") or "error"
        steps.append(Step(len(steps) + 1, t, gap, row["trace_id"], row["span_id"],
                          row.get("service_name"), label, title, details, error))
    return steps
