"""Pivots: from one value a span carries, every span that shares it.

"Who else saw this document?", "what else ran under policy db-migrations v3?", "every call
by this user / with this model / to this tool / from this prompt template", "where else did
this leaked key appear" (a redaction fingerprint). The kinds are an allow-list; the value is
always a bound parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import BadInput
from .query import Result, Store

PIVOT_LIMIT = 200

_COLS = ("s.tenant, s.trace_id, s.span_id, s.start_time, s.service_name, s.name, s.ai_kind, "
         "coalesce(s.user_id, (SELECT max(u.user_id) FROM spans u WHERE u.tenant = s.tenant "
         "AND u.trace_id = s.trace_id)) AS user_id")

# kind -> (what it is called, WHERE on view `spans` as `s`, number of bound copies)
_COLUMN_PIVOTS = {
    "model": ("model", "(s.request_model = ? OR s.response_model = ?)", 2),
    "user": ("user", "s.user_id = ?", 1),
    "tool": ("tool", "s.tool_name = ?", 1),
    "session": ("session", "s.session_id = ?", 1),
    "service": ("service", "s.service_name = ?", 1),
    "change": ("change", "s.change_id = ?", 1),
    "agent": ("agent", "s.agent_name = ?", 1),
    "data_source": ("data source", "s.data_source = ?", 1),
    "reviewer": ("reviewer", "s.reviewer = ?", 1),
}
PIVOT_KINDS = (*_COLUMN_PIVOTS, "document", "document_content", "policy", "attribute",
               "redaction")
# Attribute keys that name a prompt template (OpenInference, OpenLLMetry, custom ones often
# end in `template.id`/`template.name`): offered as pivots when a span carries them.
_TEMPLATE_KEY = re.compile(r"(^|\.)(prompt_)?template(\.|$)", re.I)
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.\-:/@]{1,200}$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{12}$")  # redaction.keys.FP_HEX digits
# A redaction record (docs/redaction.md) as DuckDB reads it.
_RECORD = """'[{"rule": "VARCHAR", "path": "VARCHAR", "fp": "VARCHAR"}]'"""

@dataclass(frozen=True)
class Pivot:
    kind: str       # one of PIVOT_KINDS
    value: str      # for `policy`: "POLICY_ID VERSION"; for `attribute`: "KEY=VALUE"
    label: str      # for people: "document zendesk:ticket/77120"


def _json(text: Any) -> Any:
    if text is None or not isinstance(text, str):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def redaction_entries(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The span's redaction record: [{rule, class, path, fp}], [] when nothing was masked."""
    entries = _json(row.get("redactions"))
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def pivots_of(row: dict[str, Any]) -> list[Pivot]:
    """Every value of one `spans` row that another span could share, most telling first: a
    leaked secret before anything else."""
    out: list[Pivot] = []
    rules: dict[str, list[str]] = {}
    for e in redaction_entries(row):
        fp = e.get("fp")
        if isinstance(fp, str) and _FINGERPRINT.match(fp):
            rules.setdefault(fp, [])
            if e.get("rule") not in rules[fp]:
                rules[fp].append(str(e.get("rule")))
    for fp, names in rules.items():
        out.append(Pivot("redaction", fp, f"secret {fp} ({', '.join(names)})"))
    docs = _json(row.get("documents"))
    for doc in docs if isinstance(docs, list) else ():
        if isinstance(doc, dict) and doc.get("id") is not None:
            out.append(Pivot("document", str(doc["id"]), f"document {doc['id']}"))
    decisions = _json(row.get("decisions"))
    seen = set()
    for dec in decisions if isinstance(decisions, list) else ():
        if isinstance(dec, dict) and dec.get("policy_id"):
            value = f"{dec['policy_id']} {dec.get('policy_version') or ''}".strip()
            if value not in seen:
                seen.add(value)
                out.append(Pivot("policy", value, f"policy {value}"))
    models = {row.get("request_model"), row.get("response_model")} - {None}
    for m in sorted(models):
        out.append(Pivot("model", m, f"model {m}"))
    for kind in ("user", "tool", "session", "agent", "data_source", "reviewer", "change",
                 "service"):
        col = {"user": "user_id", "tool": "tool_name", "session": "session_id",
               "agent": "agent_name", "change": "change_id", "service": "service_name"}.get(
                   kind, kind)
        if row.get(col):
            out.append(Pivot(kind, str(row[col]), f"{_COLUMN_PIVOTS[kind][0]} {row[col]}"))
    attrs = _json(row.get("attributes"))
    for key, value in (attrs.items() if isinstance(attrs, dict) else ()):
        if _TEMPLATE_KEY.search(key) and isinstance(value, str | int) and _SAFE_KEY.match(key):
            out.append(Pivot("attribute", f"{key}={value}", f"template {key}={value}"))
    return out


def _entries_for_fp(record: str) -> str:
    """SQL: the entries of a redaction record (an expression) for one fingerprint (a bound
    `?`), as "rule at path; ..."."""
    return (f"array_to_string(list_transform(list_filter(from_json({record}, {_RECORD}), "
            "lambda e: e.fp = ?), lambda e: e.rule || ' at ' || e.path), '; ')")


def spans_sharing(store: Store, pivot: Pivot, limit: int = PIVOT_LIMIT) -> Result:
    """Spans that carry the pivot's value, newest first; `truncated` when more exist.

    Columns: tenant, trace_id, span_id, start_time, service_name, name, ai_kind, user_id
    (the span's, else its trace's), detail (how it shares the value, e.g. rank and score).
    """
    if pivot.kind in _COLUMN_PIVOTS:
        _, where, n = _COLUMN_PIVOTS[pivot.kind]
        sql = f"SELECT {_COLS}, NULL::VARCHAR AS detail FROM spans s WHERE {where}"
        params: list[Any] = [pivot.value] * n
    elif pivot.kind in ("document", "document_content"):
        col = "document_id" if pivot.kind == "document" else "content_sha256"
        sql = (f"SELECT {_COLS}, 'rank ' || d.rank || coalesce(', score ' || d.score, '') || "
               "coalesce(', source ' || d.source, '') AS detail "
               f"FROM documents d JOIN spans s USING (tenant, trace_id, span_id) "
               f"WHERE d.{col} = ?")
        params = [pivot.value]
    elif pivot.kind == "policy":
        policy_id, _, version = pivot.value.partition(" ")
        sql = (f"SELECT {_COLS}, string_agg(DISTINCT d.kind || ' verdict ' || "
               "coalesce(d.verdict, '?') || coalesce(', enforced ' || d.action, ''), '; ') "
               "AS detail FROM decisions d JOIN spans s USING (tenant, trace_id, span_id) "
               "WHERE d.policy_id = ? AND coalesce(d.policy_version, '') = ? "
               "GROUP BY ALL")
        params = [policy_id, version]
    elif pivot.kind == "attribute":
        key, sep, value = pivot.value.partition("=")
        if not sep or not _SAFE_KEY.match(key):
            raise BadInput(f"cannot pivot on attribute {pivot.value!r}")
        sql = (f"SELECT {_COLS}, NULL::VARCHAR AS detail FROM spans s "
               "WHERE json_extract_string(s.attributes, ?) = ?")
        params = [f'$."{key}"', value]
    elif pivot.kind == "redaction":
        if not _FINGERPRINT.match(pivot.value):
            raise BadInput(f"{pivot.value!r} is not a redaction fingerprint (12 hex digits)")
        # Spans whose record names the fingerprint, and spans whose log records' do (GenAI
        # content sent as log records); `contains` skips the JSON of every other span.
        own = _entries_for_fp("s.redactions")
        logged = _entries_for_fp("""l.attributes->>'$."aitrail.redactions"'""")
        sql = ("SELECT tenant, trace_id, span_id, start_time, service_name, name, ai_kind, "
               "user_id, string_agg(detail, '; ') AS detail FROM ("
               f"SELECT {_COLS}, {own} AS detail FROM spans s "
               "WHERE contains(s.redactions::VARCHAR, ?) "
               f"UNION ALL SELECT {_COLS}, 'log record: ' || {logged} AS detail "
               "FROM logs l JOIN spans s USING (tenant, trace_id, span_id) "
               "WHERE contains(l.attributes::VARCHAR, ?)) GROUP BY ALL")
        params = [pivot.value] * 4
    else:
        raise BadInput(f"unknown pivot {pivot.kind!r}; use one of: {', '.join(PIVOT_KINDS)}")
    res = store._fetch(f"{sql} ORDER BY start_time DESC, trace_id, span_id LIMIT ?",
                       [*params, limit + 1])
    res.truncated = len(res.rows) > limit
    res.rows = res.rows[:limit]
    return res
