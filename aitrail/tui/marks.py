"""How a span is flagged on screen: a mark, words and a colour, never colour alone.

With NO_COLOR (or a monochrome terminal) the words still say it: `ERROR`, `deny`,
`review→escalate`.
"""

from __future__ import annotations

from typing import Any

import orjson

RESTRICTIVE = ("deny", "review", "modify")
VERDICT_STYLE = {"deny": "bold red", "review": "bold yellow", "modify": "yellow",
                 "allow": "green"}


def decisions(row: dict[str, Any]) -> list[dict[str, Any]]:
    raw = row.get("decisions")
    if not raw:
        return []
    try:
        value = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        return []
    return [d for d in value if isinstance(d, dict)] if isinstance(value, list) else []


def enforced(row: dict[str, Any]) -> str | None:
    """The action enforced under the span's governing verdict, when the span says."""
    verdict = row.get("policy_verdict")
    for d in decisions(row):
        if d.get("verdict") == verdict and d.get("action") is not None:
            return str(d["action"])
    return None


def is_flagged(row: dict[str, Any]) -> bool:
    return (row.get("status_code") == "error" or row.get("policy_verdict") in RESTRICTIVE
            or bool(row.get("findings")))


def span_mark(row: dict[str, Any]) -> tuple[str, str]:
    if row.get("status_code") == "error":
        return "✗", "bold red"
    if row.get("policy_verdict") in RESTRICTIVE:
        return "⚑", VERDICT_STYLE[row["policy_verdict"]]
    if row.get("findings"):
        return "!", "bold red"
    if row.get("ai_kind"):
        return "•", "cyan"
    return "", ""


def span_tags(row: dict[str, Any], kind_tag: bool = True) -> list[tuple[str, str]]:
    """Short words after the span name, most urgent first (a narrow screen cuts the end):
    verdict→enforced, ERROR, review, redacted, kind/model."""
    tags: list[tuple[str, str]] = []
    if row.get("findings"):  # evidence of a finding: where the declaration did not hold
        tags.append(("! " + ",".join(row["findings"]), "bold red"))
    verdict = row.get("policy_verdict")
    if verdict:
        action = enforced(row)
        text = f"{verdict}→{action}" if action and action != verdict else verdict
        tags.append((f"[{text}]", VERDICT_STYLE.get(verdict, "")))
    if row.get("reviewer"):
        tags.append((f"reviewed:{row['reviewer']}:{row.get('review_decision') or '?'}",
                     "blue"))
    if row.get("status_code") == "error":
        msg = str(row.get("status_message") or row.get("error_type") or "")
        if len(msg) > 28:  # the whole message is in the detail pane and the span view
            msg = msg[:27] + "…"
        tags.append((f"ERROR {msg}".strip(), "bold red"))
    if row.get("redactions"):  # a secret was pasted here (masked before it was stored)
        tags.append(("redacted", "yellow"))
    kind = row.get("ai_kind") if kind_tag else None
    if kind in ("llm", "embedding"):
        tags.append((f"{kind}:{row.get('response_model') or row.get('request_model') or '?'}",
                     "magenta"))
    elif kind == "tool" and row.get("tool_name"):
        tags.append((f"tool:{row['tool_name']}", "magenta"))
    elif kind:
        tags.append((kind, "magenta"))
    return tags


def duration(ms: float | None) -> str:
    if ms is None:
        return "?"
    if ms < 1:
        return f"{ms * 1000:.0f}µs"
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms / 60_000:.1f}m"


def when(t: Any) -> str:
    """A timestamp to the millisecond, UTC."""
    if t is None:
        return ""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def cell(v: Any, width: int = 48) -> str:
    if v is None:
        return ""
    if isinstance(v, list | tuple):
        s = ", ".join(cell(x, width) for x in v)
    elif hasattr(v, "strftime"):
        s = v.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(v, float):
        s = f"{v:.3f}".rstrip("0").rstrip(".")
    else:
        s = str(v)
    s = " ".join(s.split())
    return s if len(s) <= width else s[: width - 1] + "…"
