"""The public `spans` columns of one trace's stored rows, built in Python.

`Store.trace` ran the `spans` view (sql/views.sql) over the trace's rows: ~12 ms of DuckDB
binding, planning and conversion for a handful of rows (benchmarks/query.py), more than
reading them. The view stays the one definition of the columns; this is the same projection
for one trace, and tests hold the two equal (tests/store/test_trace_rows.py). What it does
not reproduce returns None and the caller runs the view: log records with content to join, a
column it does not know, a lifted value that DuckDB's `to_json` would escape differently
(control characters written \\u001B, not \\u001b), a duration too long to be exact in a double.
Stored JSON text is passed through as it is, like DuckDB's cast of valid JSON to JSON.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pyarrow as pa

from .schema import LIFTABLE

_KIND = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
         5: "consumer"}
_STATUS = {0: "unset", 1: "ok", 2: "error"}
_UTC = ZoneInfo("UTC")  # what DuckDB gives a TIMESTAMPTZ in the UTC time zone
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PLACEHOLDER = '{"$col":'
_LIFTED = [(f'{{"$col":"{col}"}}', col) for col in sorted(LIFTABLE)]  # the view's order
# Characters orjson escapes as \u00xx with a hex letter (DuckDB writes the letter upper case).
_HEX_LETTER_ESCAPES = re.compile("[\x0b\x0e\x0f\x1a-\x1f]")
_EXACT_NS = 2**53


class Unsupported(Exception):
    """This row needs the SQL view."""


def _time(ns: int | None) -> datetime | None:
    if ns is None:
        return None
    return (_EPOCH + timedelta(microseconds=ns // 1000)).replace(tzinfo=_UTC)


def _to_json(value: Any) -> str:
    if value is None:
        return "null"
    if not isinstance(value, str) or _HEX_LETTER_ESCAPES.search(value):
        raise Unsupported
    return orjson.dumps(value).decode()


def _attributes(r: dict[str, Any]) -> str | None:
    text = r["attributes"]
    if text is None or _PLACEHOLDER not in text:
        return text
    for placeholder, col in _LIFTED:
        if placeholder in text:
            text = text.replace(placeholder, _to_json(r[col]))
    return text


def _duration(r: dict[str, Any]) -> float | None:
    start, end = r["start_time_unix_nano"], r["end_time_unix_nano"]
    if start is None or end is None:
        return None
    if abs(end - start) >= _EXACT_NS:
        raise Unsupported
    return (end - start) / 1e6


def _case(names: dict[int, str], v: int | None) -> str | None:
    return None if v is None else names.get(v, str(v))


def _hex(v: bytes | None) -> str | None:
    return None if v is None else v.hex()


_COLUMNS = {
    "tenant": lambda r: r["tenant"],
    "trace_id": lambda r: _hex(r["trace_id"]),
    "span_id": lambda r: _hex(r["span_id"]),
    "parent_span_id": lambda r: _hex(r["parent_span_id"]),
    "kind": lambda r: _case(_KIND, r["kind"]),
    "start_time": lambda r: _time(r["start_time_unix_nano"]),
    "end_time": lambda r: _time(r["end_time_unix_nano"]),
    "duration_ms": _duration,
    "status_code": lambda r: _case(_STATUS, r["status_code"]),
    "resource": lambda r: r["resource_attributes"],
    "attributes": _attributes,
}
# Stored columns the view passes through under their own name (the rest are above).
_PASSED = {
    "name", "service_name", "status_message", "scope_name", "scope_version", "events", "links",
    "ai_kind", "source_convention", "normalizer_version", "operation", "provider",
    "request_model", "response_model", "input_tokens", "output_tokens", "system_instructions",
    "input_messages", "output_messages", "tool_name", "tool_call_id", "tool_arguments",
    "tool_result", "retrieval_query", "data_source", "documents", "user_id", "session_id",
    "agent_name", "decisions", "policy_id", "policy_version", "policy_verdict",
    "review_required", "reviewer", "review_decision", "change_id", "change_kind",
    "change_action", "change_target", "change_url", "feature_flags", "deployment_environment",
    "error_type", "redactions"}


def spans_rows(table: pa.Table, columns: list[str]) -> list[dict[str, Any]] | None:
    """The view's rows for `table` (one trace's stored rows, with tenant), as `columns`, by
    start time and span id; None when the view must be run instead."""
    if any(c not in _COLUMNS and c not in _PASSED for c in columns) \
            or "start_time" not in columns or "span_id" not in columns:
        return None
    getters = [(c, _COLUMNS.get(c) or (lambda r, c=c: r[c])) for c in columns]
    try:
        rows = [{c: get(r) for c, get in getters} for r in table.to_pylist()]
    except (Unsupported, KeyError):
        return None
    # ORDER BY start_time, span_id: NULL times last (DuckDB's default).
    rows.sort(key=lambda r: (r["start_time"] is None, r["start_time"] or _EPOCH, r["span_id"]))
    return rows
