"""Findings: where the stored spans differ from the declared AI change records.

Evaluated by DuckDB over the raw span columns (`sql/findings.sql`), never span by span in
Python: `attach_findings(store, features)` registers the recorded declarations and the
[features] map of aitrail.toml as tables and (re)creates the views `declarations` and
`findings`; `findings(store, ...)` reads the view with bound filters. Each rule runs only for
declarations that state the field it checks, so a declaration with nothing but a feature name
finds nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

import pyarrow as pa

from .declarations import DeclarationLog, Version
from .finding_rules import RULE_NAMES, RULES, Rule  # noqa: F401 (the rules' home)
from .query import Result, Store

_NS = 10**9


COLUMNS = ("rule", "severity", "tenant", "feature", "version", "in_force", "time", "trace_id",
           "span_id", "change_id", "evidence", "evidence_count", "explanation")
DECLARATION_COLUMNS = ("feature", "version", "declared_at", "effective_from", "declared_by",
                       "file", "model_provider", "models", "retrieval_source",
                       "permission_key", "human_review_required", "allowed_actions",
                       "forbidden_inputs", "prompts", "retention_days", "kill_switch",
                       "fallback")

_TS = pa.timestamp("us", tz="UTC")
_LIST = pa.list_(pa.string())
_DECL_SCHEMA = pa.schema([
    ("feature", pa.string()), ("version", pa.string()), ("declared_at", _TS),
    ("effective_from", _TS), ("declared_by", pa.string()), ("file", pa.string()),
    ("model_provider", _LIST), ("models", _LIST), ("retrieval_source", pa.string()),
    ("permission_key", pa.string()), ("human_review_required", pa.bool_()),
    ("allowed_actions", _LIST), ("forbidden_inputs", _LIST), ("forbidden_classes", _LIST),
    ("prompts", pa.string()), ("retention_days", pa.int32()), ("kill_switch", pa.string()),
    ("fallback", pa.string()), ("declared_ns", pa.uint64()), ("effective_ns", pa.uint64()),
    ("applies_from_ns", pa.uint64()), ("decl_id", pa.int64()), ("scans_text", pa.bool_()),
])


def _ns(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000) * 1000


def _decl_table(versions: list[Version]) -> pa.Table:
    """One row per recorded version. A feature's first version also applies to spans from
    before it was declared (`applies_from_ns` 0): a record written after the fact is still
    the team's statement of intent, and findings say so (`in_force` false)."""
    first: dict[str, int] = {}
    for v in versions:
        first[v.feature] = min(first.get(v.feature, _ns(v.effective_from)),
                               _ns(v.effective_from))
    rows: list[dict[str, Any]] = []
    for i, v in enumerate(versions):
        d = v.declaration
        eff = _ns(v.effective_from)
        rows.append({
            "feature": d.feature, "version": v.version, "declared_at": v.declared_at,
            "effective_from": v.effective_from, "declared_by": v.declared_by, "file": v.file,
            "model_provider": list(d.providers) if d.providers is not None else None,
            "models": list(d.models) if d.models is not None else None,
            "retrieval_source": d.retrieval_source, "permission_key": d.permission_key,
            "human_review_required": d.human_review_required,
            "allowed_actions": list(d.allowed_actions) if d.allowed_actions is not None
            else None,
            "forbidden_inputs": list(d.forbidden_inputs) if d.forbidden_inputs is not None
            else None,
            "forbidden_classes": list(d.forbidden_classes) if d.forbidden_classes is not None
            else None,
            "prompts": d.prompts, "retention_days": d.retention_days,
            "kill_switch": d.kill_switch, "fallback": d.fallback,
            "declared_ns": _ns(v.declared_at), "effective_ns": eff,
            "applies_from_ns": 0 if eff == first[d.feature] else eff,
            "decl_id": i,
            # the secret-shape scan serves forbidden_input and content_unredacted only
            "scans_text": bool(d.forbidden_classes) or d.prompts == "stored_redacted",
        })
    return pa.Table.from_pylist(rows, schema=_DECL_SCHEMA)


def attach_findings(store: Store, features: dict[str, str] | None = None,
                    now: datetime | None = None) -> int:
    """(Re)create the views `declarations` and `findings` on this store's connection.

    `features` maps service names to features ([features] of aitrail.toml); `now` is the
    time retention is judged at (default: the current time). Call again after a `declare`
    so the new version is seen. Returns the number of recorded versions.
    """
    versions = DeclarationLog(store.root).versions()
    con = store.con
    con.register("_decl", _decl_table(versions))
    con.register("_feature_services", pa.table({
        "service_name": pa.array(list((features or {}).keys()), pa.string()),
        "feature": pa.array(list((features or {}).values()), pa.string())}))
    con.register("_finding_rules", pa.table({
        "rule": pa.array(RULE_NAMES, pa.string()),
        "severity": pa.array([r.severity for r in RULES], pa.string())}))
    con.register("_findings_now", pa.table({
        "now": pa.array([now or datetime.now(UTC)], _TS)}))
    cols = ", ".join(DECLARATION_COLUMNS)
    con.execute(f"CREATE OR REPLACE VIEW declarations AS SELECT {cols} FROM _decl")
    con.execute(resources.files("aitrail.store").joinpath("sql/findings.sql").read_text())
    return len(versions)


def findings(store: Store, since: datetime | None = None, until: datetime | None = None,
             feature: str | None = None, rule: str | None = None,
             trace_id: str | None = None, limit: int | None = None) -> Result:
    """Rows of the `findings` view (attach_findings first), newest first; `truncated` when
    more than `limit` matched."""
    clauses, params = [], []
    for sql, value in (("time >= ?", since), ("time < ?", until), ("feature = ?", feature),
                       ("rule = ?", rule), ("list_contains(list_transform(evidence, "
                                            "lambda e: e.trace_id), ?)", trace_id)):
        if value is not None:
            clauses.append(sql)
            params.append(value)
    where = " AND ".join(clauses) or "TRUE"
    sql = (f"SELECT * FROM findings WHERE {where} "
           "ORDER BY time DESC, rule, trace_id, span_id")
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit + 1)
    res = store._fetch(sql, params)
    if limit is not None:
        res.truncated = len(res.rows) > limit
        res.rows = res.rows[:limit]
    return res
