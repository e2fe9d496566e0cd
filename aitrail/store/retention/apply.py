"""Applying retention: whole files are retired once every row is past its tenant's retention
and no active hold covers any of its rows.

For each file retired, a tombstone (kind `retire`, reason `retention`: the file's sha256,
size and rows, the policy that retired it, the newest row's time, the holds considered) is
appended to the `retention` integrity log and fsync'd *before* the file is unlinked. A crash
between the two leaves a tombstone whose file is still there with the same bytes:
`complete_interrupted` deletes it at the next run (and at collector start), and until then
`verify` notes `retirement_interrupted`. A file deleted without a tombstone is `deleted`.

Retention and holds take `_locks/retention.lock`, so a hold placed while retention runs
waits and then counts; retention also takes compaction's lock, so it never deletes a file a
compaction is merging.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import text_index
from ..compact import _Checkpoints, _hour_end
from ..errors import NotFound
from ..fsutil import fsync_dir, publish_lock
from ..integrity.log import file_sha256, leaf_log
from ..trace_index import sidecar_path
from .holds import RETENTION_LOG, HoldMatcher, active_holds
from .policy import RetentionPolicy, check_change

log = logging.getLogger("aitrail.retention")
_TIME = {"spans": "start_time_unix_nano", "logs": "time_unix_nano"}
DATASETS = ("spans", "logs")


@contextmanager
def _flock(root: Path, name: str, wait: bool) -> Iterator[bool]:
    locks = Path(root) / "_locks"
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextmanager
def retention_lock(root: Path) -> Iterator[None]:
    """Held while holds change and while retention runs."""
    with _flock(root, "retention.lock", wait=True):
        yield


def recorded_policy(root: Path) -> tuple[RetentionPolicy | None, int | None]:
    """The policy last recorded in the store (and its entry's seq)."""
    for e in leaf_log(root, RETENTION_LOG).entries_from_end():
        if e.get("kind") == "policy":
            return RetentionPolicy.from_entry(e), e["seq"]
    return None, None


@dataclass
class FileVerdict:
    path: str
    tenant: str
    dataset: str
    rows: int
    bytes: int
    newest: str | None  # the newest row's time
    holds: list[str] = field(default_factory=list)  # the holds that keep it


@dataclass
class RetentionReport:
    now: str
    policy: str
    dry_run: bool
    retired: list[FileVerdict] = field(default_factory=list)
    held: list[FileVerdict] = field(default_factory=list)
    completed: int = 0  # retirements a crash interrupted, finished now
    skipped: list[str] = field(default_factory=list)  # "path: why" (kept, e.g. unreadable)
    policy_recorded: bool = False
    active_holds: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"now": self.now, "policy": self.policy, "dry_run": self.dry_run,
                "policy_recorded": self.policy_recorded, "completed": self.completed,
                "active_holds": self.active_holds, "skipped": self.skipped,
                "retired": [asdict(v) for v in self.retired],
                "held": [asdict(v) for v in self.held],
                "retired_rows": sum(v.rows for v in self.retired),
                "retired_bytes": sum(v.bytes for v in self.retired)}


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds")


def _remove(root: Path, path: Path) -> None:
    """Unlink a data file and what derives from it (first: a crash never leaves a sidecar
    or text index without its file), then its directories once empty. Idempotent. Under
    the exclusive publish lock: writers create partition directories under the shared one."""
    part = path.parent
    sidecar_path(path).unlink(missing_ok=True)
    if text_index.TextIndexes().covered(part) == path.name:
        shutil.rmtree(part / text_index.TEXT_DIR, ignore_errors=True)
    path.unlink(missing_ok=True)
    if part.is_dir():
        fsync_dir(part)
    for d in (part, part.parent):  # hour=, then date=
        try:
            d.rmdir()
        except OSError:
            break
        fsync_dir(d.parent)


def complete_interrupted(root: Path) -> int:
    """Delete the files whose tombstone was logged by a run that crashed before it unlinked
    them (same bytes as logged); returns how many. Reads the log backwards only as far as
    the newest retirement whose file is gone (a run unlinks in log order), and tidies that
    one too (its directories, if the crash came before they were removed)."""
    root = Path(root)
    todo = []
    last_done = None
    for e in leaf_log(root, RETENTION_LOG).entries_from_end():
        if e.get("kind") != "retire":
            continue
        path = root / e["path"]
        if not path.exists():
            last_done = path
            break
        if file_sha256(path)[0] == e.get("sha256"):
            todo.append(path)
    if todo or (last_done is not None and last_done.parent.is_dir()):
        with publish_lock(root, exclusive=True):
            for path in [*todo, *([last_done] if last_done else [])]:
                _remove(root, path)
    return len(todo)


def _candidates(root: Path, policy: RetentionPolicy, now: datetime
                ) -> Iterator[tuple[str, str, int, int, Path]]:
    """(dataset, tenant, days, cutoff ns, file) of files in hours wholly before the cutoff."""
    committed = _Checkpoints(root).committed
    for dataset in DATASETS:
        for tdir in sorted((root / dataset).glob("tenant=*")):
            tenant = tdir.name.removeprefix("tenant=")
            days = policy.days_for(tenant)
            if days is None:
                continue
            cutoff = now - timedelta(days=days)
            cutoff_ns = int(cutoff.timestamp() * 1_000_000) * 1000
            for hdir in sorted(tdir.glob("date=*/hour=*")):
                try:
                    end = _hour_end(hdir.parent.name.removeprefix("date="),
                                    int(hdir.name.removeprefix("hour=")))
                except ValueError:
                    continue
                if end > cutoff:
                    continue
                for f in sorted(hdir.glob("*.parquet")):
                    if not f.name.startswith(".") and committed(f):
                        yield dataset, tenant, days, cutoff_ns, f


def apply_retention(root: Path, policy: RetentionPolicy, now: datetime | None = None,
                    dry_run: bool = False, wait: bool = True,
                    progress: Callable[[int, int], None] | None = None
                    ) -> RetentionReport | None:
    """Retire what `policy` says is past retention at `now` (default: the clock), sparing
    held files. Returns None when `wait` is false and another run holds the lock.
    Raises RetentionRefused when the policy would shorten a recorded compliance policy."""
    root = Path(root)
    if not root.is_dir():
        raise NotFound(f"no store at {root}")
    now = now or datetime.now(UTC)
    report = RetentionReport(now=now.isoformat(timespec="seconds"), policy=policy.describe(),
                             dry_run=dry_run)
    with _flock(root, "retention.lock", wait) as got:
        if not got:
            return None
        with _flock(root, "compact.lock", wait=True):
            if not dry_run:
                report.completed = complete_interrupted(root)
            recorded, seq = recorded_policy(root)
            check_change(recorded, policy)
            log = leaf_log(root, RETENTION_LOG)
            if recorded is None or recorded.to_entry() != policy.to_entry():
                if not dry_run:
                    seq = log.append({"kind": "policy", **policy.to_entry()})["seq"]
                report.policy_recorded = True
            holds = active_holds(root)
            report.active_holds = [h.id for h in holds]
            matcher = HoldMatcher.of(root, holds)
            todo = list(_candidates(root, policy, now))
            for i, (dataset, tenant, days, cutoff_ns, path) in enumerate(todo, start=1):
                _judge(root, log, report, matcher, dataset, tenant, days, cutoff_ns, path,
                       policy, seq, dry_run)
                if progress:
                    progress(i, len(todo))
            if not dry_run and (report.retired or report.policy_recorded):
                log.checkpoint()
    return report


def _judge(root: Path, log, report: RetentionReport, matcher: HoldMatcher, dataset: str,
           tenant: str, days: int, cutoff_ns: int, path: Path, policy: RetentionPolicy,
           policy_seq: int | None, dry_run: bool) -> None:
    time_col = _TIME[dataset]
    rel = path.relative_to(root).as_posix()
    try:
        table = pq.read_table(path, columns=["trace_id", "service_name", time_col])
    except (OSError, pa.ArrowException) as e:
        # Never delete what cannot be judged (or what may be evidence of tampering).
        report.skipped.append(f"{rel}: unreadable, kept ({str(e).splitlines()[0][:200]}); "
                              "run `aitrail verify`")
        return
    newest = pc.max(table.column(time_col)).as_py() if table.num_rows else None
    if newest is not None and newest >= cutoff_ns:
        return  # a row that is not past retention yet (the file keeps it)
    verdict = FileVerdict(rel, tenant, dataset, table.num_rows, path.stat().st_size,
                          _iso(newest), matcher.covering(tenant, table, time_col))
    if verdict.holds:
        report.held.append(verdict)
        return
    report.retired.append(verdict)
    if dry_run:
        return
    sha, size = file_sha256(path)  # files are immutable once published: outside the lock
    with publish_lock(root, exclusive=True):
        log.append({"kind": "retire", "path": rel, "reason": "retention", "sha256": sha,
                    "size": size, "rows": table.num_rows, "newest": newest,
                    "cutoff": cutoff_ns, "holds_considered": report.active_holds,
                    "policy": {"tenant": tenant, "retention_days": days, "mode": policy.mode,
                               "policy_seq": policy_seq}})
        _remove(root, path)


class RetentionRunner:
    """Applies a policy every `policy.interval_s` in a thread (the collector's): finishes
    interrupted retirements at start, never raises, and skips a turn while another process
    applies retention. `last` and `error` say how the latest run went."""

    def __init__(self, root: Path, policy: RetentionPolicy | None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.root = Path(root)
        self.policy = policy
        self.clock = clock or (lambda: datetime.now(UTC))
        self.last: RetentionReport | None = None
        self.error: str | None = None
        self.ran = threading.Event()  # set after each run (tests and status wait on it)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            done = complete_interrupted(self.root)
            if done:
                log.info("retention: finished %d interrupted retirement(s)", done)
        except Exception as e:  # the store stays readable; verify names what is left
            self.error = f"{type(e).__name__}: {e}"
            log.error("retention: %s", self.error)
        if self.policy is not None and self.policy.interval_s > 0:
            self._thread = threading.Thread(target=self._loop, name="aitrail-retention",
                                            daemon=True)
            self._thread.start()

    def run_once(self) -> RetentionReport | None:
        try:
            report = apply_retention(self.root, self.policy, now=self.clock(), wait=False)
        except Exception as e:  # a refused policy or a disk error: say so, try again later
            self.error = f"{type(e).__name__}: {e}"
            log.error("retention: %s", self.error)
            return None
        finally:
            self.ran.set()
        if report is not None:
            self.last, self.error = report, None
            if report.retired:
                log.info("retention: retired %d file(s), %d kept by holds",
                         len(report.retired), len(report.held))
        return report

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.policy.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
