"""`aitrail verify`: check the whole store against its integrity logs and checkpoints.

Every problem names its class and the object (file, log entry, checkpoint). Problems fail
verification; notes (crash leftovers that lose nothing, work in progress) do not.

The file listing and the log lengths are taken together under the exclusive publish lock
(held for a directory listing only): writers log a file and rename it under the shared lock,
compaction logs and swaps under the exclusive one, so the snapshot never shows a file without
its entry or the reverse. Files are hashed after the lock is released.
"""

from __future__ import annotations

import heapq
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ..errors import NotFound
from ..fsutil import publish_lock
from . import keys, merkle
from . import rows as row_mod
from .log import INTEGRITY_DIR, file_sha256, log_names
from .publish import COMPACT_LOG, file_digests

# class -> what it means (docs/integrity.md lists the same)
PROBLEMS = {
    "modified": "a file's bytes differ from what its log entry recorded",
    "deleted": "a logged file is missing and no retirement was logged",
    "inserted": "a data file that no log entry records",
    "swapped": "a file holds the bytes logged for another path",
    "renamed": "a logged file is missing and its bytes are at an unlogged path",
    "retired_present": "a file that a log retired or replaced is back",
    "rows_mismatch": "a file's rows do not hash to the row root its entry recorded",
    "replacement_invalid": "a replacement entry does not add up (rows, dropped rows)",
    "log_corrupt": "a log line that cannot be read",
    "log_chain": "log entries out of order, removed or changed (seq or prev hash breaks)",
    "log_truncated": "a log is shorter than its signed checkpoint",
    "log_rewritten": "a log's first entries differ from what a checkpoint signed",
    "log_missing": "a log named by a checkpoint is gone",
    "rollback": "the store is older than the anchor (a log shorter than anchored, or gone)",
    "checkpoint_corrupt": "a checkpoint that cannot be read",
    "checkpoint_signature": "a checkpoint whose signature does not verify",
    "checkpoint_key": "a checkpoint signed by another key than the store's",
    "checkpoint_origin": "a checkpoint of another store",
}
NOTES = {
    "in_flight": "a file of a collector flush that has not finished (a restart redoes it)",
    "publish_interrupted": "a logged file never renamed into place; its temporary file holds "
                           "the logged bytes",
    "compaction_interrupted": "a compaction logged but not swapped in; its inputs are intact",
    "torn_tail": "a log line cut short by a crash (never fsync'd, so never published)",
    "retirement_interrupted": "a file retired under the retention policy whose deletion a "
                              "crash interrupted; it holds the logged bytes (the next "
                              "retention run deletes it)",
}
# Entries that record a decision rather than a file: retention policies and legal holds.
_EVENT_KINDS = ("policy", "hold", "release")
_FLUSH = re.compile(r"^(?P<writer>[A-Za-z0-9_.-]+)-f(?P<seq>\d{8})-\d+\.parquet$")
DATASETS = ("spans", "logs")


@dataclass
class Finding:
    cls: str
    obj: str
    detail: str

    @property
    def problem(self) -> bool:
        return self.cls in PROBLEMS

    def to_dict(self) -> dict:
        return {"class": self.cls, "object": self.obj, "detail": self.detail}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    rows: int = 0
    logs: int = 0
    entries: int = 0
    checkpoints: int = 0
    retired: int = 0  # files deleted under the retention policy, with their tombstone
    fingerprint: str | None = None
    seconds: float = 0.0
    rows_checked: bool = True

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.problem]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if not f.problem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, cls: str, obj: str, detail: str) -> None:
        assert cls in PROBLEMS or cls in NOTES, cls
        self.findings.append(Finding(cls, obj, detail))

    def classes(self) -> set[str]:
        return {f.cls for f in self.problems}

    def to_dict(self) -> dict:
        return {"ok": self.ok, "problems": [f.to_dict() for f in self.problems],
                "notes": [f.to_dict() for f in self.notes],
                "files": self.files, "bytes": self.bytes, "rows": self.rows,
                "logs": self.logs, "entries": self.entries, "checkpoints": self.checkpoints,
                "retired_under_policy": self.retired,
                "key_fingerprint": self.fingerprint, "seconds": round(self.seconds, 3),
                "rows_checked": self.rows_checked}


@dataclass
class _Log:
    name: str
    leaves: list[bytes] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)  # readable ones, in file order


def _snapshot(root: Path) -> tuple[set[str], set[str], dict[str, int]]:
    """(data files, temporary files, log sizes), consistent with each other."""

    def take() -> tuple[set[str], set[str], dict[str, int]]:
        files: set[str] = set()
        temps: set[str] = set()
        for dataset in DATASETS:
            for p in (root / dataset).glob("tenant=*/date=*/hour=*/*"):
                rel = p.relative_to(root).as_posix()
                if p.name.endswith(".parquet") and not p.name.startswith("."):
                    files.add(rel)
                elif p.name.endswith(".parquet.tmp") and p.name.startswith("."):
                    temps.add(rel)
        sizes = {name: (root / INTEGRITY_DIR / name / "log").stat().st_size
                 for name in log_names(root)}
        return files, temps, sizes

    try:
        with publish_lock(root, exclusive=True):
            return take()
    except OSError:  # a read-only copy of a store: nothing writes to it
        return take()


def _read_log(root: Path, name: str, size: int, report: Report) -> _Log:
    log = _Log(name)
    with open(root / INTEGRITY_DIR / name / "log", "rb") as f:
        data = f.read(size)
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the data ends with a newline
    if tail:
        report.add("torn_tail", f"log {name}", f"{len(tail)} bytes after entry {len(lines)} "
                   "without a newline: an append cut short, ignored")
    prev = merkle.leaf_hash(b"")  # placeholder: the first entry's prev is ZERO
    for i, line in enumerate(lines):
        leaf = merkle.leaf_hash(line)
        expected_prev = "0" * 64 if i == 0 else prev.hex()
        prev = leaf
        log.leaves.append(leaf)
        where = f"log {name} entry {i + 1}"
        try:
            e = orjson.loads(line)
            if not isinstance(e, dict) or not isinstance(e.get("seq"), int):
                raise ValueError("not an entry")
        except (orjson.JSONDecodeError, ValueError):
            report.add("log_corrupt", where, "not a readable entry")
            continue
        if e["seq"] != i + 1 or e.get("prev") != expected_prev:
            report.add("log_chain", where, f"holds seq {e['seq']}; its prev hash "
                       + ("matches" if e.get("prev") == expected_prev else
                          "does not match the entry before it"))
        kind = e.get("kind")
        ok = kind in _EVENT_KINDS or (kind in ("add", "replace", "retire", "void")
                                      and isinstance(e.get("path"), str))
        if ok and kind in ("add", "replace"):
            ok = all(isinstance(e.get(k), (str, int)) for k in
                     ("sha256", "size", "rows", "rows_root"))
        if not ok:
            report.add("log_corrupt", where, "an entry without the fields of its kind")
            continue
        e["_log"], e["_i"] = name, i
        log.entries.append(e)
    return log


def _check_checkpoint(data: bytes, what: str, logs: dict[str, _Log], public: bytes | None,
                      origin: str | None, report: Report, anchor: bool) -> None:
    try:
        cp = keys.parse_checkpoint(data)
    except keys.BadCheckpoint as e:
        report.add("checkpoint_corrupt", what, str(e))
        return
    report.checkpoints += 1
    if not cp.signature_ok():
        report.add("checkpoint_signature", what, "the signature does not verify")
        return
    if public is None or cp.public != public:
        report.add("checkpoint_key", what, f"signed by {cp.fingerprint}; the store's key is "
                   + (keys.fingerprint(public) if public else "missing"))
        return
    if origin is not None and cp.origin != origin:
        report.add("checkpoint_origin", what, f"origin {cp.origin}, the store is {origin}")
        return
    for name, (size, root) in cp.logs.items():
        log = logs.get(name)
        have = len(log.leaves) if log else 0
        if log is None or have < size:
            cls = "rollback" if anchor else ("log_missing" if log is None else "log_truncated")
            report.add(cls, f"log {name}", f"{what} (time {cp.time}) signed {size} entries; "
                       + ("the log is gone" if log is None else f"the log has {have}"))
        elif size and merkle.root(log.leaves[:size]) != root:
            report.add("log_rewritten", f"log {name}", f"its first {size} entries differ from "
                       f"what {what} (time {cp.time}) signed")


def _flush_checkpoints(root: Path) -> Callable[[str], bool]:
    """Whether a file belongs to a collector flush its writer has not finished."""
    seqs: dict[str, float | None] = {}

    def in_flight(rel: str) -> bool:
        m = _FLUSH.match(rel.rsplit("/", 1)[-1])
        if m is None:
            return False
        writer = m.group("writer")
        if writer not in seqs:
            wal = root / "_wal" / writer
            try:
                seqs[writer] = orjson.loads((wal / "checkpoint.json").read_bytes())["flush_seq"]
            except (OSError, ValueError, KeyError):
                seqs[writer] = 0 if wal.is_dir() else None
        seq = seqs[writer]
        return seq is not None and int(m.group("seq")) > seq

    return in_flight


def verify_store(root: Path, anchor: bytes | None = None, check_rows: bool = True,
                 progress: Callable[[int, int, int, int], None] | None = None) -> Report:
    """Check everything; `anchor`: the bytes of a checkpoint kept outside the store.
    `progress(files done, files, bytes done, bytes)` is called as files are hashed."""
    t0 = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise NotFound(f"no store at {root}")
    report = Report(rows_checked=check_rows)
    files, temps, sizes = _snapshot(root)
    logs = {name: _read_log(root, name, size, report) for name, size in sizes.items()}
    report.logs = len(logs)
    report.entries = sum(len(lg.leaves) for lg in logs.values())
    public, origin = keys.public_key(root), keys.origin(root)
    report.fingerprint = keys.fingerprint(public) if public else None

    # -- checkpoints --------------------------------------------------------------------
    cps = sorted((root / INTEGRITY_DIR).glob("*/checkpoint"))
    if (root / INTEGRITY_DIR / "checkpoint").is_file():
        cps.append(root / INTEGRITY_DIR / "checkpoint")
    for path in cps:
        _check_checkpoint(path.read_bytes(), f"checkpoint {path.relative_to(root)}", logs,
                          public, origin, report, anchor=False)
    if anchor is not None:
        _check_checkpoint(anchor, "the anchor", logs, public, origin, report, anchor=True)

    # -- what the logs say each path holds now ------------------------------------------
    voided = {(lg.name, e["void_seq"]) for lg in logs.values() for e in lg.entries
              if e["kind"] == "void" and isinstance(e.get("void_seq"), int)}
    compact = logs.get(COMPACT_LOG)
    if compact and compact.entries:
        last = compact.entries[-1]
        if last["kind"] == "replace" and last["path"] not in files and all(
                r.get("path") in files for r in last.get("replaces") or []):
            voided.add((COMPACT_LOG, last["seq"]))
            report.add("compaction_interrupted", last["path"], "logged, never swapped in "
                       "(the next compaction logs it void); its inputs are intact")
    state: dict[str, tuple[str, dict]] = {}  # path -> ("live" | "retired", entry)
    ordered = heapq.merge(*(lg.entries for lg in logs.values()),
                          key=lambda e: e.get("time") if isinstance(e.get("time"), int) else 0)
    for e in ordered:
        if (e["_log"], e["seq"]) in voided or e["kind"] in ("void", *_EVENT_KINDS):
            continue
        if e["kind"] == "retire":
            before = state.get(e["path"])
            if before is not None and before[0] == "live" and e.get("sha256") not in (
                    None, before[1]["sha256"]):
                report.add("modified", e["path"], f"changed before log {e['_log']} entry "
                           f"{e['seq']} retired it: logged {before[1]['sha256'][:16]}, "
                           f"retired {str(e['sha256'])[:16]}")
            state[e["path"]] = ("retired", e)
            continue
        replaced_rows = 0
        for r in e.get("replaces") or []:
            before = state.get(r.get("path"))
            replaced_rows += r.get("rows") or 0
            if before is None:
                report.add("inserted", r.get("path", "?"), f"replaced by {e['path']} (log "
                           f"{e['_log']} entry {e['seq']}) but never logged itself")
            elif before[0] == "live" and before[1]["sha256"] != r.get("sha256"):
                report.add("modified", r["path"], f"changed before log {e['_log']} entry "
                           f"{e['seq']} replaced it: logged {before[1]['sha256'][:16]}, "
                           f"replaced {str(r.get('sha256'))[:16]}")
            state[r.get("path", "?")] = ("retired", e)
        if e["kind"] == "replace" and e["_log"] == COMPACT_LOG and \
                e["rows"] != replaced_rows - len(e.get("dropped") or []):
            report.add("replacement_invalid", e["path"], f"{e['rows']} rows replace "
                       f"{replaced_rows} less {len(e.get('dropped') or [])} dropped")
        state[e["path"]] = ("live", e)

    # -- the files ------------------------------------------------------------------------
    in_flight = _flush_checkpoints(root)
    live = {p: e for p, (s, e) in state.items() if s == "live"}
    actual: dict[str, str] = {}  # path -> sha256 of files that do not match their entry
    unlogged: dict[str, str] = {}
    total = sum(_size(root / p) for p in files)
    done_bytes = 0
    for n, rel in enumerate(sorted(files), start=1):
        path = root / rel
        try:
            sha, size = file_sha256(path)
        except FileNotFoundError:  # removed since the snapshot: judged as missing below
            files.discard(rel)
            continue
        report.files += 1
        report.bytes += size
        done_bytes += size
        st = state.get(rel)
        if st is None:
            if in_flight(rel):
                report.add("in_flight", rel, "not logged yet")
            else:
                unlogged[rel] = sha
        elif st[0] == "retired":
            if in_flight(rel):
                report.add("in_flight", rel, "retired, not deleted yet")
            elif _under_policy(st[1]) and sha == st[1].get("sha256"):
                report.add("retirement_interrupted", rel, f"tombstone in log {st[1]['_log']} "
                           f"entry {st[1]['seq']}; not deleted yet")
            else:
                report.add("retired_present", rel, f"retired by log {st[1]['_log']} entry "
                           f"{st[1]['seq']} ({st[1].get('reason') or st[1]['kind']})")
        elif sha != st[1]["sha256"] or size != st[1]["size"]:
            actual[rel] = sha
        else:
            report.rows += st[1]["rows"]
            if check_rows:
                _check_rows(path, rel, st[1], report)
        if progress:
            progress(n, len(files), done_bytes, total)

    by_sha: dict[str, list[str]] = {}
    for p, e in live.items():
        by_sha.setdefault(e["sha256"], []).append(p)
    missing = set()
    for p, e in live.items():
        if p in files:
            continue
        where, name = p.rsplit("/", 1)
        # A writer stages in the file's directory, or (the collector) in its own staging
        # directory (store/writer.py: stage).
        tmps = [root / f"{where}/.{name}.tmp"] if f"{where}/.{name}.tmp" in temps else []
        staged = root / "_wal" / e["_log"] / "staging" / f".{name}.tmp"
        if staged.is_file():
            tmps.append(staged)
        if any(file_sha256(t)[0] == e["sha256"] for t in tmps):
            report.add("publish_interrupted", p, f"logged by {e['_log']} entry {e['seq']}; "
                       "the temporary file holds its bytes")
        elif in_flight(p):
            report.add("in_flight", p, "logged, not renamed into place yet")
        else:
            missing.add(p)
    for p, sha in sorted(actual.items()):
        owners = [q for q in by_sha.get(sha, []) if q != p]
        if owners:
            report.add("swapped", p, f"holds the bytes logged for {owners[0]}")
        else:
            report.add("modified", p, f"sha256 {sha[:16]}..., logged "
                       f"{live[p]['sha256'][:16]}... (log {live[p]['_log']} entry "
                       f"{live[p]['seq']})")
    for u, sha in sorted(unlogged.items()):
        gone = [q for q in by_sha.get(sha, []) if q in missing]
        if gone:
            missing.discard(gone[0])
            report.add("renamed", u, f"holds the bytes logged for {gone[0]}, which is missing")
        else:
            report.add("inserted", u, "no log entry records this file")
    report.retired = sum(1 for p, (s, e) in state.items()
                         if s == "retired" and _under_policy(e) and p not in files)
    for p in sorted(missing):
        e = live[p]
        report.add("deleted", p, f"logged by {e['_log']} entry {e['seq']}; no retirement")
    report.seconds = time.perf_counter() - t0
    return report


def _under_policy(entry: dict) -> bool:
    return entry["kind"] == "retire" and entry.get("reason") == "retention"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _check_rows(path: Path, rel: str, entry: dict, report: Report) -> None:
    if entry.get("rows_digest") != row_mod.VERSION:
        return
    digests = file_digests(path)
    if len(digests) != entry["rows"] or row_mod.rows_root(digests).hex() != entry["rows_root"]:
        report.add("rows_mismatch", rel, f"{len(digests)} rows; their root differs from log "
                   f"{entry['_log']} entry {entry['seq']}")
        return
    dropped = entry.get("dropped") or []
    if dropped:
        have = Counter(d.hex() for d in digests)
        absent = [d for d in dropped if not have[d]]
        if absent:
            report.add("replacement_invalid", rel, f"{len(absent)} dropped duplicate rows "
                       "have no kept copy")
