"""The query API over the store: DuckDB views on the Parquet files, read-only.

Used by the CLI and the TUI; nothing outside `store/` writes SQL. Values are bound as
parameters; identifiers come from allow-lists. The connection may read only the store's
directory and runs only SELECT statements from users.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from .errors import BadInput, NotFound, QueryError
from .schema import LIFTABLE, LOGS_SCHEMA, SPANS_SCHEMA
from .text_index import TextIndexes, word_predicate, words
from .trace_index import Partition, TraceIndex, TraceReader
from .trace_rows import spans_rows

DEFAULT_LIMIT = 100
SQL_TIMEOUT_S = 30.0

# Matching spans the text index returns per tenant-hour for one search, newest first (at
# least 4 per trace of the page): reading each costs ~10 us.
TEXT_CANDIDATES = 2_000
# Filters accepted by `search` and `facets`: name -> (SQL on _spans, how to bind the value).
FILTERS = {
    "tenant": "tenant = ?",
    "service": "service_name = ?",
    "model": "(request_model = ? OR response_model = ?)",
    "verdict": "policy_verdict = ?",
    "reviewer": "reviewer = ?",
    "user": "user_id = ?",
    "change": "change_id = ?",
    "ai_kind": "ai_kind = ?",
    "since": "start_time_unix_nano >= ?",
    "until": "start_time_unix_nano < ?",
}
FACETS = ("service_name", "ai_kind", "request_model", "policy_verdict", "reviewer",
          "change_id", "user_id", "tenant")
_ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}
_HOUR_NS = 3600 * 10**9
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A search reads at least this much at once (~150k spans): tiny hours are not a query each.
_FIRST_BATCH_BYTES = 64 * 2**20
# A file listed by a query can be swapped away by compaction before DuckDB opens it: the
# query is run again on the new listing (compaction swaps a partition in one rename).
_RETRIES = 3
_READ_OPTIONS = ("hive_partitioning = true, union_by_name = true, "
                 "hive_types = {'tenant': VARCHAR, 'date': DATE, 'hour': INTEGER}")


def parse_trace_id(value: str) -> bytes:
    v = value.strip().lower()
    if len(v) != 32 or any(c not in "0123456789abcdef" for c in v):
        raise BadInput(f"trace id {value!r} must be 32 hexadecimal characters")
    return bytes.fromhex(v)


def _ns(t: datetime | int | None) -> int | None:
    if t is None or isinstance(t, int):
        return t
    return int(t.timestamp() * 1_000_000) * 1000


# A table macro with the `spans` columns over a pre-filtered source (see views.sql).
_SPANS_MACROS = {
    "_change_spans(cid, ten)": "(SELECT * FROM _spans WHERE trace_id IN (SELECT trace_id "
                               "FROM _spans WHERE change_id = cid AND (ten IS NULL OR "
                               "tenant = ten)) AND (ten IS NULL OR tenant = ten))",
}


def _attributes_expr() -> str:
    """SQL that puts lifted values back in place of their {"$col": ...} placeholders."""
    expr = "attributes"
    for col in sorted(LIFTABLE):
        expr = (f"replace({expr}, '{{\"$col\":\"{col}\"}}', "
                f"coalesce(to_json({col})::VARCHAR, 'null'))")
    return f"CASE WHEN contains(attributes, '{{\"$col\":') THEN {expr} ELSE attributes END"


def _vanished(e: duckdb.Error) -> bool:
    """Did the query fail because a listed file was swapped away (compaction)?"""
    text = str(e)
    return isinstance(e, duckdb.IOException) and (
        "No such file" in text or "No files found" in text or "does not exist" in text)


def _files_sql(files: list[Path]) -> str:
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_parquet([{listed}], {_READ_OPTIONS})"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # swapped away by compaction; the query will list again
        return 0


def _partition_ns(part: Partition) -> int:
    return int(datetime.strptime(part.date, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
               ) * 10**9 + part.hour * _HOUR_NS


def _merge_trace_rows(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """One trace's search rows from two batches of hours, combined."""
    first = a if a["_start"] <= b["_start"] else b
    out = dict(first)
    out["matching_spans"] = a["matching_spans"] + b["matching_spans"]
    out["errors"] = a["errors"] + b["errors"]
    for k in ("services", "models", "verdicts", "changes"):
        out[k] = sorted(set(a[k] or []) | set(b[k] or [])) or None
    return out


def _json_columns(description: list[tuple]) -> list[str]:
    return [d[0] for d in description if str(d[1]) == "JSON"]


@dataclass
class Result:
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool = False
    json_columns: list[str] = field(default_factory=list)  # values are JSON text


class Store:
    """A read-only view of one store directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.index = TraceIndex(self.root / "spans")
        self._reader = TraceReader()
        self._text = TextIndexes()
        self._trace_columns: tuple[list[str], list[str]] | None = None
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        # Files are published whole and never rewritten under the same name (compaction and
        # reindex write new files), so their footers can be cached across queries.
        self.con.execute("SET parquet_metadata_cache = true")
        self._create_views()
        root_literal = str(self.root).replace("'", "''")
        self.con.execute(f"SET allowed_directories = ['{root_literal}']")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    # -- setup -------------------------------------------------------------------------------

    def has_data(self) -> bool:
        return any((self.root / "spans").glob("tenant=*/date=*/hour=*/*.parquet"))

    def _create_views(self) -> None:
        self._has_logs = False
        for table, dataset, schema in (("_spans", "spans", SPANS_SCHEMA),
                                       ("_logs", "logs", LOGS_SCHEMA)):
            if any((self.root / dataset).glob("tenant=*/date=*/hour=*/*.parquet")):
                self._has_logs = self._has_logs or dataset == "logs"
                glob = str(self.root / dataset / "*" / "*" / "*" / "*.parquet").replace("'", "''")
                self.con.execute(
                    f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{glob}', "
                    f"{_READ_OPTIONS})")
            else:
                empty = pa.table({f.name: pa.array([], f.type) for f in schema})
                self.con.register(f"{table}_empty", empty)
                self.con.execute(
                    f"CREATE OR REPLACE VIEW {table} AS SELECT *, CAST(NULL AS VARCHAR) AS "
                    "tenant, CAST(NULL AS DATE) AS date, CAST(NULL AS INTEGER) AS hour "
                    f"FROM {table}_empty")
        views = resources.files("aitrail.store").joinpath("sql/views.sql").read_text()
        views = views.replace("{attributes_expr}", _attributes_expr())
        self.con.execute(views.replace("{spans_source}", "_spans"))
        start = views.index("CREATE OR REPLACE VIEW spans AS")
        body = views[start:views.index(";", start)].removeprefix(
            "CREATE OR REPLACE VIEW spans AS")
        self._spans_body = body
        self._trace_body = body.replace("{spans_source}", "_one_trace")
        # The stored columns the view reads: a trace fetch leaves the others on disk.
        self._trace_stored = tuple(c for c in SPANS_SCHEMA.names
                                   if re.search(rf"\b{c}\b", body))
        for macro, source in _SPANS_MACROS.items():
            self.con.execute(f"CREATE OR REPLACE MACRO {macro} AS TABLE "
                             + body.replace("{spans_source}", source))

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------------

    def _fetch(self, sql: str, params: list[Any] | None = None) -> Result:
        for attempt in range(_RETRIES + 1):
            try:
                cur = self.con.execute(sql, params or [])
                break
            except duckdb.Error as e:
                if attempt < _RETRIES and _vanished(e):
                    continue
                raise QueryError(str(e).splitlines()[0]) from None
        cols = [d[0] for d in cur.description]
        return Result(cols, [dict(zip(cols, r, strict=True)) for r in cur.fetchall()],
                      json_columns=_json_columns(cur.description))

    @staticmethod
    def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for key, value in filters.items():
            if value is None or value == "":
                continue
            if key == "text":
                ws = words(str(value))
                if not ws:
                    raise BadInput(f"text {value!r} has no words to search for")
                sql, values = word_predicate(ws)
                clauses.append(sql)
                params += values
                continue
            if key not in FILTERS:
                raise BadInput(f"unknown filter {key!r}; use one of: "
                               f"{', '.join([*FILTERS, 'text'])}")
            sql = FILTERS[key]
            if key in ("since", "until"):
                value = _ns(value)
            clauses.append(sql)
            params += [value] * sql.count("?")
        return (" AND ".join(clauses) or "TRUE"), params

    # -- the API -----------------------------------------------------------------------------

    def sql(self, query: str, limit: int | None = 1000,
            timeout_s: float = SQL_TIMEOUT_S) -> Result:
        """Run one read-only SELECT; `truncated` says whether rows were left out."""
        try:
            statements = self.con.extract_statements(query)
        except duckdb.Error as e:
            raise QueryError(str(e).splitlines()[0]) from None
        if len(statements) != 1:
            raise QueryError(f"expected exactly one statement, got {len(statements)}")
        kind = statements[0].type.name
        if kind not in _ALLOWED_STATEMENTS:
            raise QueryError(f"read-only: {kind} statements are not allowed, only SELECT")
        timer = threading.Timer(timeout_s, self.con.interrupt)
        timer.start()
        try:
            for attempt in range(_RETRIES + 1):
                try:
                    cur = self.con.execute(query)
                    cols = [d[0] for d in cur.description]
                    rows = cur.fetchmany(limit + 1) if limit is not None else cur.fetchall()
                    break
                except duckdb.IOException as e:
                    if attempt == _RETRIES or not _vanished(e):
                        raise
        except duckdb.InterruptException:
            raise QueryError(f"query took longer than {timeout_s:g} s and was stopped") from None
        except duckdb.Error as e:
            raise QueryError(str(e).splitlines()[0]) from None
        finally:
            timer.cancel()
        truncated = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        return Result(cols, [dict(zip(cols, r, strict=True)) for r in rows], truncated,
                      _json_columns(cur.description))

    def _trace_table(self, trace_id: str, tenant: str | None,
                     columns: tuple[str, ...] | None = None) -> pa.Table:
        """The stored rows of one trace (only `columns`, if given, and the partition
        columns): the trace index names the file(s) holding it, whatever its hour, and
        their footers the row group(s) to read."""
        tid = parse_trace_id(trace_id)
        for attempt in range(_RETRIES + 1):
            try:
                table = self._reader.read(self.index.locate(tid, tenant), tid, columns)
                break
            except FileNotFoundError:  # swapped away by compaction: list again
                if attempt == _RETRIES:
                    raise
        if table is None:
            raise NotFound(f"no trace {trace_id} in {self.root}")
        return table

    def _trace_shape(self) -> tuple[list[str], list[str]]:
        """The `spans` view's columns and which of them are JSON, asked of DuckDB once."""
        if self._trace_columns is None:
            empty = pa.table({f.name: pa.array([], f.type) for f in SPANS_SCHEMA})
            empty = empty.append_column("tenant", pa.array([], pa.string()))
            self.con.register("_one_trace", empty)
            try:
                cur = self.con.execute(f"SELECT * FROM ({self._trace_body}) LIMIT 0")
                self._trace_columns = ([d[0] for d in cur.description],
                                       _json_columns(cur.description))
            finally:
                self.con.unregister("_one_trace")
        return self._trace_columns

    def trace(self, trace_id: str, tenant: str | None = None) -> Result:
        """Every span of one trace, by start time (the public `spans` columns). Built in
        Python from the stored rows (trace_rows.py) unless log records may add content or
        a row needs the view itself."""
        table = self._trace_table(trace_id, tenant, self._trace_stored)
        if not self._has_logs:
            columns, json_columns = self._trace_shape()
            rows = spans_rows(table, columns)
            if rows is not None:
                return Result(list(columns), rows, json_columns=list(json_columns))
        return self._trace_view(table)

    def _trace_view(self, table: pa.Table) -> Result:
        """The `spans` view over one trace's stored rows (run by DuckDB)."""
        self.con.register("_one_trace", table)
        try:
            return self._fetch(f"SELECT * FROM ({self._trace_body}) "
                               "ORDER BY start_time, span_id")
        finally:
            self.con.unregister("_one_trace")

    def raw_trace(self, trace_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
        """The stored rows of one trace (binary ids, raw columns), for lossless export."""
        table = self._trace_table(trace_id, tenant).drop_columns(["date", "hour"])
        table = table.sort_by([("start_time_unix_nano", "ascending"), ("span_id", "ascending")])
        return table.to_pylist()

    def raw_rows(self) -> list[dict[str, Any]]:
        """Every stored row (for tests and small stores; the CLI never calls this)."""
        return self._fetch("SELECT * EXCLUDE (date, hour) FROM _spans "
                           "ORDER BY tenant, trace_id, span_id").rows

    def search(self, limit: int = DEFAULT_LIMIT, **filters: Any) -> Result:
        """Traces with at least one span matching every filter, newest first.

        Tenant-hours are scanned newest first, in batches of at least 64 MiB of files, then
        twice that, and so on, until the page is full (performance.md: a page stays fast at
        10M spans). Then the hour just older is read for the page's traces that start in the
        oldest hour read, so one crossing that boundary is placed by its earliest matching
        span. (One matching in hours older still, a trace over an hour long, is placed by its
        spans in those two hours.) With free text, hours with a text index are looked up
        through it (`_text_batch`).
        """
        where, params = self._where(filters)
        ws = words(str(filters["text"])) if filters.get("text") else []
        # Files the text index covers: it names the matching spans, the rest is SQL.
        other, other_params = self._where({k: v for k, v in filters.items() if k != "text"})
        since, until = _ns(filters.get("since")), _ns(filters.get("until"))
        parts = [p for p in self.index.partitions(filters.get("tenant") or None)
                 if p.files
                 and (since is None or _partition_ns(p) + _HOUR_NS > since)
                 and (until is None or _partition_ns(p) < until)]
        found: dict[tuple[str, bytes], dict[str, Any]] = {}

        def add(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                key = (row["tenant"], row["trace_id"])
                have = found.get(key)
                found[key] = row if have is None else _merge_trace_rows(have, row)

        i, size, oldest = 0, _FIRST_BATCH_BYTES, None
        while i < len(parts):
            batch, got = [], 0
            while i < len(parts) and (not batch or got < size):
                batch.append(parts[i])
                got += sum(_size(f) for f, _ in parts[i].files)
                i += 1
            size *= 2
            oldest = min(_partition_ns(p) for p in batch)
            if ws:
                rows = self._text_batch(batch, ws, where, params, other, other_params, limit,
                                        [*found.values()], oldest)
            else:
                rows = self._search_files([f for p in batch for f, _ in p.files], where,
                                          params, limit + 1)
            add(rows)
            if sum(r["_start"] >= oldest for r in found.values()) > limit:
                break
        if i < len(parts) and oldest is not None:
            older = _partition_ns(parts[i])
            files = [(f, ids) for p in parts[i:] if _partition_ns(p) == older
                     for f, ids in p.files]
            # Only traces the older hour holds (its trace index says; no index: maybe).
            edge = [r["trace_id"] for r in found.values() if r["_start"] < oldest + _HOUR_NS
                    and any(ids is None or r["trace_id"] in ids for _, ids in files)]
            files = [f for f, _ in files]
            if edge and files:
                add(self._search_files(files, f"({where}) AND trace_id IN (SELECT unnest(?))",
                                       [*params, edge], len(edge)))
        rows = sorted(found.values(), key=lambda r: (-r["_start"], r["trace_id"]))
        out = []
        for r in rows[:limit + 1]:
            start = r.pop("_start")
            out.append({"tenant": r["tenant"], "trace_id": r["trace_id"].hex(),
                        "start_time": _EPOCH + timedelta(microseconds=start // 1000),
                        **{k: v for k, v in r.items() if k not in ("tenant", "trace_id")}})
        cols = ["tenant", "trace_id", "start_time", "first_span", "matching_spans",
                "services", "models", "verdicts", "changes", "errors"]
        return Result(cols, [{c: r[c] for c in cols} for r in out[:limit]],
                      truncated=len(out) > limit)

    def _text_batch(self, batch: list[Partition], ws: list[str], where: str,
                    params: list[Any], other: str, other_params: list[Any], limit: int,
                    found: list[dict[str, Any]], oldest: int) -> list[dict[str, Any]]:
        """One batch of a free-text search. A file the hour's text index covers is looked up
        by the spans it names (no text is read); other files are scanned. When the index
        names only the newest `n` matching spans of an hour (a common word), what it gives
        is exact only down to the oldest of them (`cutoff`): it is used if the page fills
        above every such cutoff, otherwise those files are scanned after all."""
        n = max(TEXT_CANDIDATES, 4 * (limit + 1))
        scan, indexed, partial, candidates, cutoff = [], [], [], [], 0
        for part in batch:
            covered = self._text.covered(part.path)
            hits = self._text.search(part.path, ws, n) if covered else None
            for f, _ in part.files:
                if hits is None or f.name != covered:
                    scan.append(f)
                elif hits.traces:
                    (indexed if hits.complete else partial).append(f)
                    candidates += hits.spans
                    if not hits.complete:
                        cutoff = max(cutoff, hits.cutoff)
        by_spans = f"({other}) AND (trace_id || span_id) IN (SELECT unnest(?))"

        def named(files: list[Path]) -> list[dict[str, Any]]:
            if not files:
                return []
            return self._search_files(files, by_spans, [*other_params, candidates], limit + 1)

        rows = self._search_files(scan, where, params, limit + 1) if scan else []
        rows += named(indexed)
        from_partial = named(partial)
        if partial and sum(r["_start"] >= max(oldest, cutoff)
                           for r in [*found, *rows, *from_partial]) <= limit:
            from_partial = self._search_files(partial, where, params, limit + 1)
        return rows + from_partial

    def _search_files(self, files: list[Path], where: str, params: list[Any],
                      limit: int) -> list[dict[str, Any]]:
        """Matching traces of these files (at most `limit`, newest first), one row each."""
        # One scan, grouping every matching trace of the files: measured on the 10M-span
        # store (benchmarks/query.py filters, interleaved), 59-84 ms against 89-94 for two
        # steps (the page's traces from ids and start times, then the summary columns of
        # their spans only), which read the files twice.
        src = _files_sql(files)
        return self._fetch(
            "SELECT tenant, trace_id, min(start_time_unix_nano) AS _start, "
            "arg_min(name, start_time_unix_nano) AS first_span, count(*) AS matching_spans, "
            "list(DISTINCT service_name) FILTER (WHERE service_name IS NOT NULL) AS services, "
            "list(DISTINCT coalesce(response_model, request_model)) FILTER "
            "(WHERE coalesce(response_model, request_model) IS NOT NULL) AS models, "
            "list(DISTINCT policy_verdict) FILTER (WHERE policy_verdict IS NOT NULL) "
            "AS verdicts, "
            "list(DISTINCT change_id) FILTER (WHERE change_id IS NOT NULL) AS changes, "
            "count(*) FILTER (WHERE status_code = 2) AS errors "
            f"FROM {src} WHERE {where} "
            "GROUP BY tenant, trace_id "
            "ORDER BY min(start_time_unix_nano) DESC, trace_id LIMIT ?",
            [*params, limit]).rows

    def facets(self, top: int = 10, **filters: Any) -> dict[str, list[tuple[Any, int]]]:
        """Counts of spans per value of each facet column, under the same filters: one scan
        (grouping sets), the top values of each column."""
        where, params = self._where(filters)
        cols = ", ".join(FACETS)
        sets = ", ".join(f"({c})" for c in FACETS)
        which = " ".join(f"WHEN grouping({c}) = 0 THEN '{c}'" for c in FACETS)
        value = " ".join(f"WHEN grouping({c}) = 0 THEN CAST({c} AS VARCHAR)" for c in FACETS)
        rows = self._fetch(
            f"SELECT CASE {which} END AS facet, CASE {value} END AS value, count(*) AS n "
            f"FROM (SELECT {cols} FROM _spans WHERE {where}) "
            f"GROUP BY GROUPING SETS ({sets}) "
            "HAVING value IS NOT NULL "
            "QUALIFY row_number() OVER (PARTITION BY facet ORDER BY n DESC, value) <= ? "
            "ORDER BY facet, n DESC, value", [*params, top]).rows
        out: dict[str, list[tuple[Any, int]]] = {c: [] for c in FACETS}
        for r in rows:
            out[r["facet"]].append((r["value"], r["n"]))
        return out

    def changes(self, limit: int = DEFAULT_LIMIT) -> Result:
        res = self._fetch("SELECT * FROM changes ORDER BY first_seen DESC, change_id LIMIT ?",
                          [limit + 1])
        res.truncated = len(res.rows) > limit
        res.rows = res.rows[:limit]
        return res

    def change_trace_ids(self, change_id: str, tenant: str | None = None) -> list[str]:
        """Hex ids of every trace with a span of the change (a legal hold's selection)."""
        if not self.has_data():
            return []
        res = self._fetch("SELECT DISTINCT lower(hex(trace_id)) AS t FROM _spans "
                          "WHERE change_id = ? AND (? IS NULL OR tenant = ?) ORDER BY t",
                          [change_id, tenant, tenant])
        return [r["t"] for r in res.rows]

    def change_spans(self, change_id: str, tenant: str | None = None) -> Result:
        """Every span of every trace that touched the change, in time order."""
        res = self._fetch("SELECT * FROM _change_spans(?, ?) "
                          "ORDER BY start_time, trace_id, span_id", [change_id, tenant])
        if not res.rows:
            raise NotFound(f"no change {change_id!r} in {self.root}; "
                           "`aitrail changes` lists the known ones")
        return res
