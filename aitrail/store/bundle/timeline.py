"""timeline.md: the narrative a postmortem writer pastes, one section per AI-influenced
change (then any exported trace that touched none).

A pure function of rows of the `spans` view and incident notes, so it is the same for the
same evidence: no export time inside (that is in manifest.json), times in UTC. Content is
quoted as stored (after redaction), each value cut at CONTENT_CHARS with a pointer to
spans.parquet, where it is whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from ..replay import _json, render_parts

CONTENT_CHARS = 1200
STEP_KINDS = {"agent", "retrieval", "rerank", "llm", "embedding", "tool", "guardrail",
              "review", "change"}


def _cut(text: str, limit: int = CONTENT_CHARS) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + f" … ({len(text) - limit} more characters in spans.parquet)"


def _quote(text: str, limit: int = CONTENT_CHARS) -> list[str]:
    """A blockquote nested under a step's bullet."""
    return ["     > " + line if line else "     >" for line in _cut(text, limit).splitlines()]


def _parts(parts: Any) -> str:
    """Message parts as text: tool calls and their answers written out, not elided."""
    if not isinstance(parts, list):
        return str(parts)
    out = []
    for p in parts:
        t = p.get("type") if isinstance(p, dict) else None
        if t in ("text", "reasoning"):
            out.append(str(p.get("content", "")))
        elif t == "tool_call":
            out.append(f"→ calls {p.get('name')} with {_code(p.get('arguments') or {}, 600)}")
        elif t == "tool_call_response":
            out.append(f"← tool answered {_code(p.get('response'), 600)}")
        else:
            out.append(render_parts([p]))
    return "\n".join(out)


def _code(value: Any, limit: int = 300) -> str:
    s = value if isinstance(value, str) else orjson.dumps(value).decode()
    s = " ".join(s.split())
    s = s if len(s) <= limit else s[:limit - 1] + "…"
    return "`" + s.replace("`", "'") + "`"


def _t(t: datetime) -> str:
    return t.strftime("%H:%M:%S.%f")[:-3]


def _messages(text: str | None) -> list[tuple[str, str]]:
    msgs = _json(text)
    if isinstance(msgs, str):
        return [("text", msgs)]
    out = []
    for m in msgs if isinstance(msgs, list) else ():
        if isinstance(m, dict):
            out.append((str(m.get("role") or "?"), _parts(m.get("parts"))))
    return out


def _decisions(row: dict[str, Any]) -> list[str]:
    out = []
    decisions = _json(row.get("decisions"))
    for d in decisions if isinstance(decisions, list) else ():
        if not isinstance(d, dict) or d.get("kind") == "review":
            continue
        policy = str(d.get("policy_id") or d.get("component") or "a policy")
        if d.get("policy_version"):
            policy += f" {d['policy_version']}"
        verdict = d.get("verdict") or d.get("native_verdict")
        text = f"Policy `{policy}` returned **{verdict}**"
        if d.get("action") is not None:
            text += f", enforced **{d['action']}**"
        if d.get("rule"):
            text += f" (rule `{d['rule']}`)"
        if d.get("reason"):
            text += f": {d['reason']}"
        out.append(text + ".")
    return out


class _Writer:
    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[str, str]]] = {}  # trace -> conversation so far

    def step(self, n: int, row: dict[str, Any]) -> list[str]:
        kind = row.get("ai_kind")
        who = row.get("service_name") or "?"
        head = f"{n}. **{_t(row['start_time'])}** · {who} · "
        body: list[str] = []
        if kind == "agent":
            line = f"agent `{row.get('agent_name') or row['name']}` started"
            if row.get("user_id"):
                line += f" for user {row['user_id']}"
            body += self._conversation(row, new_only=False)
        elif kind in ("retrieval", "rerank"):
            docs = _json(row.get("documents"))
            docs = docs if isinstance(docs, list) else []
            verb = "retrieved" if kind == "retrieval" else "reranked"
            line = f"{verb} {len(docs)} document{'s' * (len(docs) != 1)}"
            if row.get("data_source"):
                line += f" from `{row['data_source']}`"
            if row.get("retrieval_query"):
                line += f" for “{_cut(row['retrieval_query'], 300)}”"
            for doc in docs:
                if not isinstance(doc, dict):
                    continue
                meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
                source = doc.get("source") or meta.get("source") or meta.get("url") or \
                    row.get("data_source") or "?"
                body.append(f"   - `{doc.get('id')}` (source `{source}`, score "
                            f"{doc.get('score')})")
                if doc.get("content"):
                    body += _quote(str(doc["content"]), 500)
        elif kind in ("llm", "embedding"):
            model = row.get("response_model") or row.get("request_model") or "?"
            line = f"called {row.get('provider') or '?'} model `{model}`"
            tin, tout = row.get("input_tokens"), row.get("output_tokens")
            if tin is not None or tout is not None:
                line += f" ({'?' if tin is None else tin} tokens in, " \
                        f"{'?' if tout is None else tout} out)"
            body += self._conversation(row, new_only=True)
        elif kind == "tool":
            line = f"ran tool `{row.get('tool_name') or row['name']}`"
            if row.get("tool_arguments"):
                body.append(f"   - arguments: {_code(row['tool_arguments'], 600)}")
            if row.get("tool_result"):
                body.append(f"   - result: {_code(row['tool_result'], 600)}")
        elif kind == "guardrail":
            line = f"policy check `{row['name']}`"
        elif kind == "review":
            line = f"review `{row['name']}`"
        elif kind == "change":
            line = f"`{row['name']}`"
        else:
            line = f"`{row['name']}`"
        body += [f"   - {d}" for d in _decisions(row)]
        if row.get("reviewer") or row.get("review_decision"):
            body.append(f"   - Reviewed by **{row.get('reviewer') or '?'}**: "
                        f"**{row.get('review_decision') or '?'}**.")
        if row.get("change_kind") or row.get("change_action") or row.get("change_target"):
            what = " ".join(str(x) for x in (row.get("change_kind"), row.get("change_action"))
                            if x)
            text = f"   - Change: {what or 'change'}"
            if row.get("change_target"):
                text += f" on `{row['change_target']}`"
            if row.get("change_url"):
                text += f" ({row['change_url']})"
            body.append(text + ".")
        if row.get("status_code") == "error":
            why = row.get("status_message") or row.get("error_type") or "error"
            body.append(f"   - **Failed:** {why}")
        body.append(f"   - span `{row['trace_id']}/{row['span_id']}`")
        return [head + line + ".", *body]

    def _conversation(self, row: dict[str, Any], new_only: bool) -> list[str]:
        convo: list[tuple[str, str]] = []
        system = _json(row.get("system_instructions"))
        if system:
            convo.append(("system", _parts(system)))
        convo += _messages(row.get("input_messages"))
        seen = self.seen.get(row["trace_id"], []) if new_only else []
        n = 0
        while n < len(convo) and n < len(seen) and convo[n] == seen[n]:
            n += 1
        out = []
        if n:
            out.append(f"   - ({n} earlier message{'s' * (n != 1)} as before)")
        for role, text in convo[n:]:
            label = {"system": "System instructions", "user": "Prompt (user)"}.get(
                role, f"Input ({role})")
            out += [f"   - {label}:", *_quote(text)]
        outputs = _messages(row.get("output_messages"))
        for role, text in outputs:
            out += [f"   - Output ({role}):", *_quote(text)]
        if row.get("ai_kind") == "llm":
            self.seen[row["trace_id"]] = convo + outputs
        return out


def _is_step(row: dict[str, Any]) -> bool:
    return row.get("ai_kind") in STEP_KINDS or row.get("status_code") == "error"


def _ordered(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["start_time"], r["trace_id"], r["span_id"]))


def _distinct(rows: list[dict[str, Any]], *cols: str) -> list[str]:
    out: list[str] = []
    for r in rows:
        v = " ".join(str(r[c]) for c in cols if r.get(c))
        if v and v not in out:
            out.append(v)
    return out


def _summary(rows: list[dict[str, Any]]) -> list[str]:
    first, last = rows[0]["start_time"], max(r["end_time"] or r["start_time"] for r in rows)
    span = (last - first).total_seconds()
    took = f"{span:.1f} s" if span < 120 else f"{span / 60:.0f} min"
    traces: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        traces.setdefault(r["trace_id"], []).append(r)
    changes = _distinct(rows, "change_kind", "change_action")
    targets = _distinct(rows, "change_target")
    models = _distinct([{**r, "model": r.get("response_model") or r.get("request_model")}
                        for r in rows if r.get("ai_kind") in ("llm", "embedding")],
                       "provider", "model")
    verdicts = []
    for r in rows:
        verdicts += [d for d in _decisions(r) if d not in verdicts]
    reviews: dict[tuple, str] = {}
    for r in rows:
        if r.get("reviewer"):
            reviews.setdefault((r["reviewer"], r.get("review_decision")),
                               f"{r['reviewer']} {r.get('review_decision') or 'reviewed'} at "
                               f"{_t(r['start_time'])}")
    errors = [f"`{r['name']}` ({r.get('service_name')}): {r.get('status_message') or 'error'}"
              for r in rows if r.get("status_code") == "error"]
    end = last.strftime("%H:%M:%S" if last.date() == first.date() else "%Y-%m-%d %H:%M:%S")
    services = sorted({r["service_name"] for r in rows if r.get("service_name")})
    out = [f"- **When:** {first.strftime('%Y-%m-%d %H:%M:%S')} to {end} UTC ({took})",
           f"- **Services:** {', '.join(services)}"]
    if models:
        out.append(f"- **Models:** {', '.join(models)}")
    if changes or targets:
        out.append(f"- **Change:** {', '.join(changes) or '?'}"
                   + (f" on {', '.join(f'`{t}`' for t in targets)}" if targets else ""))
    if verdicts:
        out.append("- **Policy verdicts:** " + " Then ".join(
            v.removeprefix("Policy ").removesuffix(".") + "." for v in verdicts))
    out.append(f"- **Review:** {'; '.join(reviews.values()) or 'none recorded'}")
    out.append("- **Outcome:** "
               + ("failed: " + "; ".join(errors) if errors else "no errors recorded"))
    out.append("- **Traces:** " + ", ".join(
        f"`{tid}` ({', '.join(sorted({r['service_name'] for r in rs if r.get('service_name')}))},"
        f" {len(rs)} spans)" for tid, rs in sorted(traces.items(),
                                                   key=lambda kv: kv[1][0]["start_time"])))
    return out


def _redactions(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        for red in _json(r.get("redactions")) or ():
            if isinstance(red, dict):
                out.append(f"- `{r['name']}` ({r['trace_id'][:8]}…/{r['span_id']}): "
                           f"{red.get('rule')} ({red.get('class')}) at `{red.get('path')}`, "
                           f"fingerprint `{red.get('fp')}`")
    return out or ["None: nothing in these spans was masked."]


def _section(title: str, rows: list[dict[str, Any]]) -> list[str]:
    rows = _ordered(rows)
    out = [f"## {title}", "", *_summary(rows), "", "### What happened", ""]
    writer = _Writer()
    steps = [r for r in rows if _is_step(r)]
    day = None
    for n, r in enumerate(steps, start=1):
        if r["start_time"].date() != day:
            day = r["start_time"].date()
            out += [f"{day.isoformat()} (UTC):", ""]
        out += writer.step(n, r)
    out += ["", "### Redactions", "", *_redactions(rows), ""]
    return out


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


def _holds(events: list[dict[str, Any]]) -> list[str]:
    """Legal holds over the exported traces (retention log entries, oldest first)."""
    released = {e.get("hold"): e for e in events if e.get("kind") == "release"}
    out = []
    for e in events:
        if e.get("kind") != "hold":
            continue
        line = f"- `{e.get('hold')}` placed {_utc(e['time'])} UTC by {e.get('user') or '?'}"
        line += f": {e['reason']}" if e.get("reason") else ""
        gone = released.get(e.get("hold"))
        line += (f" (removed {_utc(gone['time'])} UTC by {gone.get('user') or '?'})" if gone
                 else " (in force when exported: kept from retention)")
        out.append(line)
    return ["", "## Legal holds", "", *out] if out else []


def render(rows: list[dict[str, Any]], notes: list[dict[str, Any]], selection: str,
           retention: list[dict[str, Any]] | None = None) -> str:
    """Rows of the `spans` view of every exported trace; notes from the workspace;
    `retention`: the retention log entries the bundle carries (holds listed last)."""
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_trace.setdefault(r["trace_id"], []).append(r)
    changes: dict[str, set[str]] = {}
    for r in rows:
        if r.get("change_id"):
            changes.setdefault(r["change_id"], set()).add(r["trace_id"])
    n_traces = len(by_trace)
    out = [f"# Timeline: {selection}", "",
           f"{n_traces} trace{'s' * (n_traces != 1)}, {len(rows)} spans. Times are UTC. "
           "Every span named here is in spans.parquet and traces.otlp.jsonl of this bundle, "
           "with its inclusion proof in manifest.json (`aitrail verify` checks them).", ""]
    order = sorted(changes, key=lambda c: min(r["start_time"] for t in changes[c]
                                              for r in by_trace[t]))
    for cid in order:
        out += _section(f"Change `{cid}`", [r for t in changes[cid] for r in by_trace[t]])
    rest = [t for t in by_trace if not any(t in ts for ts in changes.values())]
    for tid in sorted(rest, key=lambda t: min(r["start_time"] for r in by_trace[t])):
        out += _section(f"Trace `{tid}` (no change recorded)", by_trace[tid])
    out += ["## Incident notes", ""]
    if notes:
        for n in notes:
            where = f" (trace `{n['trace_id']}`)" if n.get("trace_id") else ""
            out.append(f"- {str(n.get('time'))[:19].replace('T', ' ')} UTC, "
                       f"{n.get('user')} in “{n.get('incident')}”{where}: {n.get('text')}")
    else:
        out.append("None recorded in the workspace for these traces.")
    out += _holds(retention or [])
    return "\n".join(out) + "\n"
