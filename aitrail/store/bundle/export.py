"""`aitrail export`: a self-contained, verifiable bundle of whole traces (docs/bundles.md).

    spans.parquet        the stored span rows, exactly (plus their tenant)
    logs.parquet         the stored log records of those traces (if any)
    logs.otlp.jsonl      the log records as OTLP/JSON lines (if any)
    traces.otlp.jsonl    the spans as OTLP/JSON lines, as the Collector's file exporter writes
    timeline.md          the narrative of each AI-influenced change, for the postmortem
    checkpoint           a signed checkpoint of the store's integrity logs
    manifest.json        hashes, per-row digests and inclusion proofs, versions, selection
    manifest.sig         the store key's signature of the manifest
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ... import __version__
from ..errors import BadInput, NotFound, StoreError
from ..integrity import keys, merkle
from ..integrity import rows as row_mod
from ..integrity.log import INTEGRITY_DIR, store_checkpoint
from ..query import Store
from ..retention.holds import RETENTION_LOG, retention_events
from ..schema import NORMALIZER_VERSION, SCHEMA_VERSION
from ..workspace import Workspace
from . import collect, timeline
from .archive import write_tar_gz
from .layout import (
    CHECKPOINT,
    FORMAT,
    LOGS,
    LOGS_JSONL,
    MANIFEST,
    SIGNATURE,
    SPANS,
    TENANT_COLUMN,
    TIMELINE,
    TRACES_JSONL,
    signed_message,
)
from .otlp import log_lines, trace_lines
from .proofs import Tree

Selection = collect.Selection


@dataclass
class ExportReport:
    path: Path
    spans: int
    log_records: int
    traces: int
    files: dict[str, int]  # name -> bytes
    fingerprint: str
    fresh_checkpoint: bool


def _ordered(tables: list[pa.Table], proofs: list[list[dict]], time_col: str
             ) -> tuple[pa.Table | None, list[dict]]:
    """Rows of every file in one table sorted by (tenant, trace, time, span), proofs along."""
    if not tables:
        return None, []
    try:
        table = pa.concat_tables(tables)
    except pa.ArrowInvalid as e:
        raise StoreError(f"the selected files have different columns ({e}); export them "
                         "separately") from None
    flat = [p for ps in proofs for p in ps]
    table = table.append_column("_i", pa.array(range(len(flat)), pa.int64()))
    table = table.sort_by([(TENANT_COLUMN, "ascending"), ("trace_id", "ascending"),
                           (time_col, "ascending"), ("span_id", "ascending"),
                           ("_i", "ascending")])
    order = table.column("_i").to_pylist()
    table = table.drop_columns(["_i"])
    # The tenant goes last: the stored columns keep their order, the verifier drops it.
    cols = [c for c in table.column_names if c != TENANT_COLUMN] + [TENANT_COLUMN]
    table = table.select(cols)
    records = []
    tids, sids = table.column("trace_id").to_pylist(), table.column("span_id").to_pylist()
    for i, j in enumerate(order):
        records.append({"trace_id": None if tids[i] is None else tids[i].hex(),
                        "span_id": None if sids[i] is None else sids[i].hex(), **flat[j]})
    return table, records


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _checkpoint(root: Path, need: dict[str, int]) -> tuple[keys.Checkpoint, bool]:
    """The store's checkpoint if it is valid and covers every needed entry; else a fresh
    one (a bundle never carries something its checkpoint does not prove)."""
    path = root / INTEGRITY_DIR / "checkpoint"
    try:
        cp = keys.parse_checkpoint(path.read_bytes())
        if cp.signature_ok() and cp.public == keys.public_key(root) and all(
                cp.logs.get(name, (0, b""))[0] >= n for name, n in need.items()):
            return cp, False
    except (OSError, keys.BadCheckpoint):
        pass
    return store_checkpoint(root)[1], True


def _retention_events(root: Path, traces: list[tuple[str, str]], spans: pa.Table
                      ) -> list[tuple[int, bytes]]:
    """The retention policy in force and the legal holds over these traces (holds.py)."""
    services: dict[str, tuple[int, int]] = {}
    for name, t in zip(spans.column("service_name").to_pylist(),
                       spans.column("start_time_unix_nano").to_pylist(), strict=True):
        if name is not None and t is not None:
            lo, hi = services.get(name, (t, t))
            services[name] = (min(lo, t), max(hi, t))
    return retention_events(root, {t for _, t in traces}, services)


def _log_proofs(root: Path, cp: keys.Checkpoint, entries: list[tuple[str, int]]
                ) -> list[list[str]]:
    """Inclusion proofs of (log, leaf index) entries against the checkpoint."""
    trees: dict[str, Tree] = {}
    for name in {log for log, _ in entries}:
        size, head = cp.logs[name]
        leaves = collect.log_leaves(root, name, size)
        if merkle.root(leaves) != head:
            raise StoreError(f"integrity log {name} differs from what its checkpoint "
                             "signed; run `aitrail verify` (nothing exported)")
        trees[name] = Tree(leaves)
    return [[h.hex() for h in trees[log].proof(i)] for log, i in entries]


def _manifest_sig(signer: keys.Signer, manifest: bytes) -> bytes:
    sig = base64.b64encode(signer.sign(signed_message(manifest))).decode()
    return f"signature {signer.fingerprint} {sig}\n".encode()


def build(store: Store, workspace: Workspace, selection: Selection,
          progress: collect.Progress | None = None) -> tuple[dict[str, bytes], dict]:
    """The bundle's files (name -> bytes) and its manifest as a dict."""
    root = store.root
    traces = collect.resolve(store, workspace, selection)
    got = collect.collect(store, traces, progress)
    spans, span_rows = _ordered(got.spans, got.span_proofs, "start_time_unix_nano")
    logs, log_rows = _ordered(got.logs, got.log_proofs, "time_unix_nano")
    if spans is None:
        raise NotFound(f"nothing to export for {selection.describe()}")
    if progress:
        progress("signing", 0, 1)
    events = _retention_events(root, got.traces, spans)
    need = collect.needed_leaves(got.sources)
    if events:
        need[RETENTION_LOG] = events[-1][0] + 1
    cp, fresh = _checkpoint(root, need)
    signer = keys.Signer(root)
    if signer.public != cp.public:
        raise StoreError("the store's checkpoint is signed by another key than the store's; "
                         "run `aitrail verify`")
    entry_proofs = _log_proofs(root, cp, [(s.log, s.index) for s in got.sources])
    event_proofs = _log_proofs(root, cp, [(RETENTION_LOG, i) for i, _ in events])
    files: dict[str, bytes] = {SPANS: _parquet(spans), TRACES_JSONL: trace_lines(spans),
                               CHECKPOINT: cp.encode()}
    if logs is not None:
        files[LOGS] = _parquet(logs)
        files[LOGS_JSONL] = log_lines(logs)
    if progress:
        progress("writing the timeline", 0, 1)
    # The `spans` view over the collected rows, in one query (per trace: ~15 ms each).
    view_rows = store._trace_view(spans).rows
    files[TIMELINE] = timeline.render(view_rows, timeline_notes(workspace, selection,
                                                                got.traces),
                                      selection.describe(),
                                      [orjson.loads(line) for _, line in events]).encode()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "aitrail_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "normalizer_version": NORMALIZER_VERSION,
        "row_digest": row_mod.VERSION,
        "selection": {**selection.to_dict(), "traces": [list(t) for t in got.traces]},
        "exported_by": workspace.user,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "origin": cp.origin,
        "key_fingerprint": cp.fingerprint,
        "checkpoint": {"file": CHECKPOINT, "time": cp.time, "fresh": fresh},
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                  for name, data in sorted(files.items())},
        "columns": {ds: [[f.name, str(f.type)] for f in t.schema]
                    for ds, t in (("spans", spans), ("logs", logs)) if t is not None},
        "sources": [{"path": s.path, "log": s.log, "index": s.index,
                     "entry": s.line.decode(), "proof": p}
                    for s, p in zip(got.sources, entry_proofs, strict=True)],
        "rows": {"spans": span_rows, **({"logs": log_rows} if logs is not None else {})},
        # The retention policy in force and the legal holds over these traces, proven like
        # the sources (docs/retention.md).
        "retention": [{"log": RETENTION_LOG, "index": i, "entry": line.decode(), "proof": p}
                      for (i, line), p in zip(events, event_proofs, strict=True)],
    }
    data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"
    files[MANIFEST] = data
    files[SIGNATURE] = _manifest_sig(signer, data)
    return files, manifest


def timeline_notes(workspace: Workspace, selection: Selection,
                   traces: list[tuple[str, str]]) -> list[dict]:
    """Incident notes that belong in the timeline: the selected incident's, else those of
    every incident that pins one of the exported traces."""
    ids = {t for _, t in traces}
    out = []
    for inc in workspace.incidents():
        if selection.kind == "incident":
            take = inc.name == selection.values[0]
        else:
            take = any(p.get("trace_id") in ids for p in inc.pins)
        if take:
            out += [{**n, "incident": inc.name} for n in inc.notes]
    return sorted(out, key=lambda n: str(n.get("time")))


def write(files: dict[str, bytes], dest: Path, as_dir: bool = False) -> Path:
    """The bundle at `dest`: a .tar.gz, or with `as_dir` a directory (which must not exist
    or be empty). Written beside `dest` first, then renamed: never half a bundle."""
    dest = Path(dest).expanduser()
    if not dest.parent.is_dir():
        raise BadInput(f"{dest.parent}: no such directory")
    if not as_dir:
        write_tar_gz(files, dest)
        return dest
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadInput(f"{dest}: exists and is not an empty directory")
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def export(store: Store, workspace: Workspace, selection: Selection, dest: Path,
           as_dir: bool = False, progress: collect.Progress | None = None) -> ExportReport:
    """Build, write and record in the access log (every export is)."""
    files, manifest = build(store, workspace, selection, progress)
    path = write(files, dest, as_dir)
    spans = len(manifest["rows"]["spans"])
    logs = len(manifest["rows"].get("logs", []))
    traces = manifest["selection"]["traces"]
    workspace.log_access(
        "export", f"bundle {path}",
        trace_id=traces[0][1] if len(traces) == 1 else None,
        change_id=selection.values[0] if selection.kind == "change" else None,
        detail=f"{selection.describe()}: {spans} spans, {logs} log records, "
               f"{len(traces)} traces; key {manifest['key_fingerprint']}")
    return ExportReport(path, spans, logs, len(traces),
                        {n: len(d) for n, d in files.items()}, manifest["key_fingerprint"],
                        manifest["checkpoint"]["fresh"])
