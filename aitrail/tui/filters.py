"""The search bar: `key:value` filters and free text, as a responder types them.

    verdict:review since:7d "another customer"    service:"coding agent" model:gpt-4o

Keys are the `Store.search` filters (plus a few short names); anything else is free text.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

KEYS = ("since", "until", "tenant", "service", "model", "verdict", "reviewer", "change",
        "user", "kind")
ALIASES = {"kind": "ai_kind", "ai_kind": "ai_kind", "svc": "service", "from": "since",
           "to": "until"}
# facet column (Store.facets) -> the search key that filters on it
FACET_KEYS = {"service_name": "service", "ai_kind": "kind", "request_model": "model",
              "policy_verdict": "verdict", "reviewer": "reviewer", "change_id": "change",
              "user_id": "user", "tenant": "tenant"}
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class FilterError(ValueError):
    pass


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (UTC when no zone) or an age: 30m, 6h, 7d, 2w."""
    v = value.strip()
    if v[:-1].isdigit() and v[-1:] in _UNITS:
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[v[-1]]: int(v[:-1])})
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{value!r} is neither ISO time (2026-11-10T09:00Z) nor an age "
                          "(30m, 6h, 7d)") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass
class Query:
    filters: dict[str, Any] = field(default_factory=dict)  # Store.search keyword arguments
    shown: list[str] = field(default_factory=list)          # for people: "verdict=review"


def parse(text: str, now: datetime | None = None) -> Query:
    try:
        tokens = shlex.split(text)
    except ValueError as e:
        raise FilterError(f"unbalanced quotes: {e}") from None
    q, words = Query(), []
    for tok in tokens:
        key, sep, value = tok.partition(":")
        name = ALIASES.get(key.lower(), key.lower())
        if sep and value and (name in KEYS or name == "ai_kind"):
            if name in ("since", "until"):
                q.filters[name] = parse_time(value, now)
            else:
                q.filters[name] = value
            q.shown.append(f"{key.lower()}={value}")
        else:
            words.append(tok)
    if words:
        q.filters["text"] = " ".join(words)
        q.shown.append(f"text={q.filters['text']!r}")
    return q


def add_filter(text: str, key: str, value: str) -> str:
    """The bar's text with `key:value` set (replacing an earlier value of that key)."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = text.split()
    kept = [t for t in tokens if t.partition(":")[0].lower() != key]
    return shlex.join([*kept, f"{key}:{value}"])


def to_fields(text: str) -> dict[str, str]:
    """The bar's text as one value per key (and `text`), for the filter form."""
    try:
        tokens = shlex.split(text)
    except ValueError:
        tokens = text.split()
    fields: dict[str, str] = {}
    words = []
    for tok in tokens:
        key, sep, value = tok.partition(":")
        name = ALIASES.get(key.lower(), key.lower())
        name = "kind" if name == "ai_kind" else name
        if sep and value and name in KEYS:
            fields[name] = value
        else:
            words.append(tok)
    if words:
        fields["text"] = " ".join(words)
    return fields


def from_fields(fields: dict[str, str]) -> str:
    """The filter form's values as bar text (the inverse of `to_fields`)."""
    tokens = [f"{k}:{fields[k].strip()}" for k in KEYS if fields.get(k, "").strip()]
    text = shlex.join(tokens)
    words = fields.get("text", "").strip()
    if words:
        text = f"{text} {shlex.quote(words) if ' ' in words else words}".strip()
    return text
