"""Which stored rows a bundle holds, and what proves each: the selection is resolved to whole
traces (tenant, trace id), their rows are read from the very files that hold them, and each
file is matched with the integrity log entry that published it."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import BadInput, NotFound, StoreError
from ..integrity import merkle
from ..integrity import rows as row_mod
from ..integrity.log import INTEGRITY_DIR, file_sha256, log_names
from ..query import Store, parse_trace_id
from ..workspace import Workspace
from .proofs import Tree

Progress = Callable[[str, int, int], None]
KINDS = ("trace", "change", "incident", "where")


@dataclass
class Selection:
    """What the user asked for: `--trace ID...`, `--change ID`, `--incident NAME` or
    `--where SQL` (a condition on the `spans` view), optionally within one tenant."""

    kind: str
    values: list[str]
    tenant: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadInput(f"unknown selection {self.kind!r}; use one of {', '.join(KINDS)}")
        if not self.values or any(not str(v).strip() for v in self.values):
            raise BadInput(f"--{self.kind} needs a value")

    def describe(self) -> str:
        return f"{self.kind} {' '.join(self.values)}" + (
            f" (tenant {self.tenant})" if self.tenant else "")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "values": list(self.values), "tenant": self.tenant}


def resolve(store: Store, workspace: Workspace, sel: Selection) -> list[tuple[str | None, str]]:
    """(tenant or None for "any", hex trace id) of every trace the selection names."""
    if sel.kind == "trace":
        return [(sel.tenant, parse_trace_id(v).hex()) for v in sel.values]
    if sel.kind == "change":
        rows = store.change_spans(sel.values[0], sel.tenant).rows
        return sorted({(r["tenant"], r["trace_id"]) for r in rows})
    if sel.kind == "incident":
        inc = workspace.incident(sel.values[0])
        if not inc.pins:
            raise NotFound(f"incident {sel.values[0]!r} pins no trace; pin some in the TUI "
                           "(i) first")
        return sorted({(sel.tenant, p["trace_id"]) for p in inc.pins if p.get("trace_id")},
                      key=lambda t: t[1])
    # --where: the user's own read-only SELECT condition (Store.sql allows one SELECT only).
    rows = store.sql(f"SELECT DISTINCT tenant, trace_id FROM spans WHERE {sel.values[0]}",
                     limit=None).rows
    if sel.tenant:
        rows = [r for r in rows if r["tenant"] == sel.tenant]
    if not rows:
        raise NotFound(f"no span matches --where {sel.values[0]!r}")
    return sorted({(r["tenant"], r["trace_id"]) for r in rows})


@dataclass
class Source:
    """A published file rows came from, and the log entry that published it."""

    path: str  # relative to the store
    log: str
    index: int  # leaf index in its log (seq - 1)
    line: bytes  # the entry's exact bytes: its leaf is SHA-256(0x00 || line)
    tree: Tree  # over the file's sorted row digests
    sorted_digests: list[bytes]


@dataclass
class Collected:
    spans: list[pa.Table] = field(default_factory=list)  # stored columns + tenant
    span_proofs: list[list[dict[str, Any]]] = field(default_factory=list)
    logs: list[pa.Table] = field(default_factory=list)
    log_proofs: list[list[dict[str, Any]]] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    traces: list[tuple[str, str]] = field(default_factory=list)  # (tenant, hex id)


def _entries(root: Path) -> dict[str, list[tuple[str, int, bytes, dict]]]:
    """path -> every add/replace entry for it: (log, leaf index, line, entry)."""
    out: dict[str, list[tuple[str, int, bytes, dict]]] = {}
    for name in log_names(root):
        data = (root / INTEGRITY_DIR / name / "log").read_bytes()
        for i, line in enumerate(data.split(b"\n")[:-1]):  # a torn tail has no newline
            try:
                e = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(e, dict) and e.get("kind") in ("add", "replace") and \
                    isinstance(e.get("path"), str):
                out.setdefault(e["path"], []).append((name, i, line, e))
    return out


def _source(root: Path, rel: str, digests: list[bytes],
            entries: dict[str, list[tuple[str, int, bytes, dict]]]) -> Source:
    """The entry that published the file as it is now; StoreError if none matches (the
    store would fail `aitrail verify`: a bundle must not launder that)."""
    sha, size = file_sha256(root / rel)
    ordered = sorted(digests)
    root_hex = row_mod.rows_root(digests).hex()
    for log, i, line, e in reversed(entries.get(rel, [])):
        if e.get("sha256") == sha and e.get("size") == size:
            if e.get("rows_digest") != row_mod.VERSION or e.get("rows_root") != root_hex:
                raise StoreError(f"{rel}: its rows do not match its integrity log entry; run "
                                 "`aitrail verify` (nothing exported)")
            return Source(rel, log, i, line, Tree(ordered), ordered)
    raise StoreError(f"{rel}: no integrity log entry publishes this file as it is; run "
                     "`aitrail verify` (nothing exported)")


def _read(path: Path) -> pa.Table:
    # ParquetFile, not pq.read_table: no hive partition columns inferred from the path.
    try:
        return pq.ParquetFile(path).read()
    except (pa.ArrowException, OSError) as e:
        raise StoreError(f"{path}: cannot be read ({e}); run `aitrail verify` (nothing "
                         "exported)") from None


def _take(root: Path, rel: str, wanted: pa.Array, entries: dict, out: Collected,
          dataset: str) -> None:
    table = _read(root / rel)
    digests = row_mod.row_digests(table)
    mask = pc.is_in(table.column("trace_id"), value_set=wanted)
    picked = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
    if not picked:
        return
    src = _source(root, rel, digests, entries)
    out.sources.append(src)
    k = len(out.sources) - 1
    tenant = rel.split("/")[1].removeprefix("tenant=")
    rows = table.take(pa.array(picked, pa.int64()))
    rows = rows.append_column("tenant", pa.array([tenant] * len(picked), pa.string()))
    proofs = []
    for i in picked:
        d = digests[i]
        at = bisect.bisect_left(src.sorted_digests, d)
        proofs.append({"digest": d.hex(), "source": k, "index": at,
                       "proof": [h.hex() for h in src.tree.proof(at)]})
    (out.spans if dataset == "spans" else out.logs).append(rows)
    (out.span_proofs if dataset == "spans" else out.log_proofs).append(proofs)


def collect(store: Store, traces: list[tuple[str | None, str]],
            progress: Progress | None = None) -> Collected:
    """The stored rows of `traces` (spans, and log records with their trace ids) with what
    proves each. Files are located through the trace index, read whole (a row's proof needs
    every digest of its file) and checked against their log entry."""
    root = store.root
    entries = _entries(root)
    by_file: dict[str, set[bytes]] = {}
    found: set[tuple[str, str]] = set()
    listings: dict[str | None, list] = {}  # one listing per tenant, not one per trace
    for tenant, tid in traces:
        raw = bytes.fromhex(tid)
        if tenant not in listings:
            listings[tenant] = [f for part in store.index.partitions(tenant)
                                for f in part.files]
        for path, ids in listings[tenant]:
            if ids is None or raw in ids:  # no sidecar: the file is read and filtered
                by_file.setdefault(path.relative_to(root).as_posix(), set()).add(raw)
    out = Collected()
    files = sorted(by_file)
    for n, rel in enumerate(files, start=1):
        _take(root, rel, pa.array(sorted(by_file[rel]), pa.binary(16)), entries, out, "spans")
        if progress:
            progress("reading span files", n, len(files))
    for t in out.spans:
        found |= set(zip(t.column("tenant").to_pylist(),
                         (b.hex() for b in t.column("trace_id").to_pylist()), strict=True))
    missing = [tid for tenant, tid in traces
               if not any(f[1] == tid and (tenant is None or f[0] == tenant) for f in found)]
    if missing:
        raise NotFound(f"no trace {', '.join(missing)} in {root}")
    out.traces = sorted(found)
    log_files = _log_files(store, out.traces)
    for n, rel in enumerate(log_files, start=1):
        tenant = rel.split("/")[1].removeprefix("tenant=")
        wanted = sorted({bytes.fromhex(t) for ten, t in out.traces if ten == tenant})
        if wanted:
            _take(root, rel, pa.array(wanted, pa.binary(16)), entries, out, "logs")
        if progress:
            progress("reading log files", n, len(log_files))
    return out


def _log_files(store: Store, traces: list[tuple[str, str]]) -> list[str]:
    """Log files holding records of these traces (logs have no trace index: DuckDB reads the
    trace id column of each, with row-group statistics pruning)."""
    base = store.root / "logs"
    if not any(base.glob("tenant=*/date=*/hour=*/*.parquet")):
        return []
    glob = str(base / "*" / "*" / "*" / "*.parquet").replace("'", "''")
    cur = store.con.execute(
        f"SELECT DISTINCT filename FROM read_parquet('{glob}', filename = true, "
        "hive_partitioning = false) WHERE trace_id IN (SELECT unnest(?))",
        [[bytes.fromhex(t) for _, t in traces]])
    return sorted(Path(f).resolve().relative_to(store.root).as_posix()
                  for (f,) in cur.fetchall())


def needed_leaves(sources: list[Source]) -> dict[str, int]:
    """log -> the tree size a checkpoint must cover for every source's entry."""
    need: dict[str, int] = {}
    for s in sources:
        need[s.log] = max(need.get(s.log, 0), s.index + 1)
    return need


def log_leaves(root: Path, name: str, size: int) -> list[bytes]:
    data = (root / INTEGRITY_DIR / name / "log").read_bytes()
    lines = data.split(b"\n")[:-1]
    if len(lines) < size:
        raise StoreError(f"integrity log {name} is shorter than its checkpoint; run "
                         "`aitrail verify`")
    return [merkle.leaf_hash(line) for line in lines[:size]]
