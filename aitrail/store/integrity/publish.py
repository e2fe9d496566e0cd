"""The hooks the writers call: what each kind of publication logs, and when.

- `record_add`: writer.publish, between the temporary file's fsync and its rename.
- `retire_unfinished_flush`: the collector, before it deletes the files of a flush that did
  not finish (their spans are still in its WAL and are written again).
- `record_replacement` / `void_interrupted_replacement`: compaction, under the exclusive
  publish lock right before its directory swap, and at its next start after a crash.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from . import rows as row_mod
from .log import file_sha256, leaf_log

COMPACT_LOG = "compact"
_FLUSH = re.compile(r"^(?P<writer>[A-Za-z0-9_.-]+)-f(?P<seq>\d{8})-\d+\.parquet$")


def relative(root: Path, path: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def file_facts(path: Path, digests: list[bytes]) -> dict:
    sha, size = file_sha256(path)
    return {"sha256": sha, "size": size, "rows": len(digests),
            "rows_root": row_mod.rows_root(digests).hex(), "rows_digest": row_mod.VERSION}


def record_add(root: Path, log: str, dest: Path, facts: dict) -> dict:
    """Log the file about to be renamed to `dest`, with its `file_facts` (an existing `dest`
    is logged as replaced: reindex rewrites files in place)."""
    fields = {"kind": "add", "path": relative(root, dest), **facts}
    if dest.exists():
        sha, _ = file_sha256(dest)
        fields["kind"] = "replace"
        fields["replaces"] = [{"path": fields["path"], "sha256": sha}]
    return leaf_log(root, log).append(fields)


def file_digests(path: Path) -> list[bytes]:
    """Row digests of a stored file, a row group at a time (bounded memory)."""
    f = pq.ParquetFile(path)
    out: list[bytes] = []
    for g in range(f.num_row_groups):
        out += row_mod.row_digests(f.read_row_group(g))
    return out


def retire_unfinished_flush(root: Path, writer: str, flush_seq: int) -> int:
    """Retire every file this writer logged for a flush after `flush_seq` and has not
    retired yet; returns how many. Entries of a flush are the log's newest, so this reads
    the log backwards only until the last finished flush."""
    log = leaf_log(root, writer)
    state: dict[str, str] = {}  # path -> newest kind (reading newest first)
    todo: list[dict] = []
    for e in log.entries_from_end():
        m = _FLUSH.match(Path(e.get("path", "")).name)
        if m is None or m.group("writer") != writer:
            continue
        if int(m.group("seq")) <= flush_seq:
            break
        if e["path"] in state:
            continue
        state[e["path"]] = e["kind"]
        if e["kind"] in ("add", "replace"):
            todo.append(e)
    for e in reversed(todo):
        path = Path(root) / e["path"]
        facts = {}
        if path.exists():
            sha, size = file_sha256(path)
            facts = {"sha256": sha, "size": size}
        log.append({"kind": "retire", "path": e["path"], "reason": "unfinished flush",
                    "retires_seq": e["seq"], **facts})
    return len(todo)


def prepare_replacement(root: Path, new_file: Path, final: Path, inputs: list[Path],
                        dataset: str) -> dict:
    """The log entry for `new_file` (to appear at `final`) replacing `inputs`, after
    checking that it holds exactly their rows, less exact duplicates (StoreError if rows
    went missing or appeared: compaction then keeps the inputs). Reads every file: call it
    before taking the exclusive publish lock."""
    new_digests = file_digests(new_file)
    replaces = []
    old: Counter[bytes] = Counter()
    for p in inputs:
        digests = file_digests(p)
        old.update(digests)
        replaces.append({"path": relative(root, p), **file_facts(p, digests)})
    new = Counter(new_digests)
    extra = new - old
    dropped = old - new
    if extra or any(d not in new for d in dropped):
        raise StoreError(f"{final.parent}: the merged file does not hold the same rows as its "
                         f"inputs ({sum(extra.values())} new, "
                         f"{sum(dropped.values())} gone); compaction keeps the inputs")
    fields = {"kind": "replace", "path": relative(root, final),
              **file_facts(new_file, new_digests), "replaces": replaces,
              "dropped": sorted(d.hex() for d in dropped.elements()), "dataset": dataset}
    return fields


def record_replacement(root: Path, fields: dict) -> dict:
    """Log a prepared replacement (under the exclusive publish lock, before the swap) and
    sign the compaction log's new head (compaction has no shutdown to sign at)."""
    log = leaf_log(root, COMPACT_LOG)
    entry = log.append(fields)
    log.checkpoint()
    return entry


def void_interrupted_replacement(root: Path, entry: dict | None = None) -> dict | None:
    """After a crash (or a failed swap) between logging a replacement and the swap: the new
    file never appeared, the inputs are still in place. Log that the replacement did not
    happen. `entry`: the replacement just logged; default: the compaction log's newest."""
    log = leaf_log(root, COMPACT_LOG)
    newest = [entry] if entry is not None else log.entries_from_end()
    for e in newest:
        if e.get("kind") != "replace" or (Path(root) / e["path"]).exists():
            return None
        if not all((Path(root) / r["path"]).exists() for r in e["replaces"]):
            return None  # not the state a crash leaves: verify reports it
        return log.append({"kind": "void", "void_seq": e["seq"], "path": e["path"],
                           "reason": "compaction interrupted before its swap"})
    return None


def table_digests(table: pa.Table) -> list[bytes]:
    return row_mod.row_digests(table)


ADOPT_LOG = "adopt"


def adopt_unlogged(root: Path, dry_run: bool = False) -> list[str]:
    """Enter every data file no log records (a store written before integrity existed) in
    the `adopt` log as `add` entries marked `adopted`, then sign it; returns their paths.
    An operator's explicit act, logged like any other: adoption vouches only for the bytes
    as they are now, and the entries say so."""
    from .verify import verify_store  # verify imports this module

    report = verify_store(root, check_rows=False)
    paths = sorted(f.obj for f in report.problems if f.cls == "inserted"
                   and (Path(root) / f.obj).is_file())
    if dry_run or not paths:
        return paths
    log = leaf_log(root, ADOPT_LOG)
    for rel in paths:
        path = Path(root) / rel
        log.append({"kind": "add", "path": rel, "adopted": True,
                    **file_facts(path, file_digests(path))})
    log.checkpoint()
    return paths
