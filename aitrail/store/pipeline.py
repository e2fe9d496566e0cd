"""The collector's sink: validate -> dedupe -> WAL (fsync) -> ack; a background flusher turns
the WAL into Parquet and trims it.

Crash safety rests on three rules:
1. A request is acknowledged only after its WAL record is fsync'd.
2. A flush writes Parquet files named <writer>-f<flush seq>-<n>.parquet, then records a
   checkpoint (flush seq, WAL position) atomically, then deletes WAL segments before it.
3. On start, files of a flush newer than the checkpoint are deleted (that flush did not
   finish) and the WAL after the checkpoint is replayed.
So every acknowledged span ends up in exactly one flush, whenever the process dies.

One Pipeline is one writer; `aitrail serve --workers N` runs N of them in N processes
(collector/supervisor.py), and `seed_dedupe` lets each recognise retries of requests that
another one logged before a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .compact import GRACE_S, compact_store
from .config import check_tenant
from .convert_worker import Converter, ConvertError
from .errors import StoreError
from .fsutil import fsync_dir, publish_lock
from .integrity.log import leaf_log
from .integrity.publish import retire_unfinished_flush
from .log_records import LogBatch, append_logs_request, log_problem
from .normalize import Normalizer
from .records import SpanRows, _span_problem, _spanrows
from .redaction import RedactionError, RedactionPolicy, Redactor
from .trace_index import sidecar_path
from .wal import WAL, Position, WALFailed, peek
from .wire import WireRequest, item_groups
from .writer import ParquetWriter, Staged, publish

log = logging.getLogger("aitrail.pipeline")

_TENANT_LEN = struct.Struct("<H")


class Busy(StoreError):
    """Retryable: the flusher is behind; try again after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DiskFull(Busy):
    """Retryable: too little free disk to accept more."""


class Unavailable(StoreError):
    """Retryable from the client's side (another instance, or after a restart): this
    instance cannot acknowledge anything (shutting down, or its WAL failed)."""

    def __init__(self, message: str, retry_after_s: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class _PyDigestWindow:
    """The last `capacity` distinct digests, oldest forgotten first (`_spanrows.DigestWindow`
    does the same in ~6 MB for 300k, where 64-bit ints in a dict cost ~27 MB; this stands in
    where it was not compiled: an OrderedDict, because taking the oldest key of a plain dict
    scans the slots its earlier deletions left, 11 us a span once the window was full)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._d: OrderedDict[int, None] = OrderedDict()

    def __contains__(self, d: int) -> bool:
        return d in self._d

    def __len__(self) -> int:
        return len(self._d)

    def extend(self, digests) -> None:
        d = self._d
        for x in digests:
            if x not in d:
                if len(d) == self.capacity:
                    d.popitem(last=False)
                d[x] = None


DigestWindow = _spanrows.DigestWindow if _spanrows is not None else _PyDigestWindow


@dataclass
class Accepted:
    spans: int  # newly stored
    rejected: int  # invalid spans, not stored
    duplicates: int  # already stored (exporter retries)
    message: str = ""  # for partial_success


@dataclass
class Limits:
    flush_interval_s: float = 2.0
    # Request bytes converted per flush round: bounds the flusher's memory (a span is
    # ~1.4 KB of protobuf and ~4 KB as Arrow columns; two or three rounds are in hand, see
    # `Pipeline.flush`). The flusher wakes as soon as a round is
    # waiting, else every flush_interval_s. benchmarks/ingest_grpc.py (300k spans, quiet
    # machine): 8 MiB 17.7k spans/s, peak RSS 362 MB; 4 MiB 20.3k, 322 MB; 2 MiB 18.9k and
    # 18.0k, 292 and 295 MB, at 500 B/span instead of 484 until compaction.
    flush_round_bytes: int = 2 * 1024 * 1024
    # How far the flusher may fall behind before exporters get back-pressure: bounds the WAL
    # and the replay after a crash (unflushed requests stay in the WAL file, not in memory).
    max_unflushed_bytes: int = 64 * 1024 * 1024
    min_free_disk_bytes: int = 64 * 1024 * 1024
    dedupe_window: int = 300_000  # span digests remembered for duplicate detection
    # Closed tenant-hours are compacted this often (0: never; `aitrail compact` by hand).
    compact_interval_s: float = 300.0
    compact_grace_s: float = GRACE_S
    # Convert spans in a helper process (store/convert_worker.py): `aitrail serve` with one
    # process does, so conversion runs on the other core.
    convert_in_helper: bool = False


TRACES, LOGS = b"T", b"L"
# A flush signs its writer's integrity checkpoint at most this often (~5 ms: a signature and
# an fsync'd file), and `stop` always does.
CHECKPOINT_INTERVAL_S = 30.0


def encode_payload(tenant: str, data: bytes, kind: bytes = TRACES) -> bytes:
    """A WAL record: tenant length (u16), tenant, kind (T: traces, L: logs), the request."""
    return _payload_head(tenant, kind) + data


def _payload_head(tenant: str, kind: bytes) -> bytes:
    t = tenant.encode()
    return _TENANT_LEN.pack(len(t)) + t + kind


def decode_payload(payload: bytes) -> tuple[str, bytes, bytes]:
    """(tenant, request bytes, kind) of a WAL record."""
    (n,) = _TENANT_LEN.unpack_from(payload)
    return payload[2:2 + n].decode(), payload[3 + n:], payload[2 + n:3 + n]


# (WAL end, tenant, request size, kind, digests of its items as packed u64): the request
# itself stays in the WAL file (the page cache), read back when it is flushed.
_Item = tuple[Position, str, int, bytes, bytes]

# Flush files live until their hour is compacted (zstd 3 then): measured on the benchmark
# load, zstd 1 writes in 7.0 us/span instead of 10.9, for 480 B/span instead of 431.
FLUSH_COMPRESSION_LEVEL = 1


@dataclass
class _Round:
    """One flush round on its way to being published."""
    items: list[_Item]
    seq: int
    first: int = 1  # number of its first spans file (its logs files come before)
    staged: list[Staged] = field(default_factory=list)
    spans: int = 0
    helper: int | None = None  # its spans are at the helper (the generation it went to)
    pending: Future | None = None  # its spans being staged here: (files, spans)


def _pack(digests) -> bytes:
    return struct.pack(f"<{len(digests)}Q", *digests)


def _read_checkpoint(wal_dir: Path) -> tuple[int, Position]:
    """(flush seq, WAL position) of a writer's last finished flush; (0, start) if none."""
    path = wal_dir / "checkpoint.json"
    if not path.exists():
        return 0, Position(0, 0)
    cp = orjson.loads(path.read_bytes())
    return cp["flush_seq"], Position(cp["segment"], cp["offset"])


class Pipeline:
    """One writer: its WAL under <root>/_wal/<writer_id>, its files named by writer id."""

    def __init__(self, root: Path, writer_id: str, mapping: dict[str, list[str]] | None = None,
                 limits: Limits | None = None,
                 redaction: RedactionPolicy | None = None) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", writer_id):
            raise ValueError(f"invalid writer id {writer_id!r}")
        self.root = Path(root)
        self.writer_id = writer_id
        self.limits = limits or Limits()
        self.mapping = mapping
        self.normalizer = Normalizer(mapping)
        # Secrets are masked in the request path, before the WAL (docs/redaction.md).
        self.redactor = Redactor(self.root, redaction)
        self._converter = (Converter(mapping, self.root, FLUSH_COMPRESSION_LEVEL)
                           if self.limits.convert_in_helper and _spanrows is not None else None)
        self.wal_dir = self.root / "_wal" / writer_id
        # A round's files are written here, then renamed into their partitions (publish).
        self._staging = self.wal_dir / "staging"
        self.wal = WAL(self.wal_dir)
        self._queue: deque[_Item] = deque()
        self._queue_lock = threading.Lock()
        self._unflushed_bytes = 0
        # Digests of recently stored spans; the oldest are forgotten first.
        self._seen = DigestWindow(self.limits.dedupe_window)
        self._seen_lock = threading.Lock()
        self._seen_files: deque[tuple[Path, int]] | None = None  # (file, digests), oldest first
        self._seen_total = 0
        self._flush_seq = 0
        self._checkpoint = Position(0, 0)
        self._wake = threading.Event()
        self._wake_compactor = threading.Event()
        self._stopping = False
        self._accepting = False
        self._flusher: threading.Thread | None = None
        self._compactor: threading.Thread | None = None
        self.compact_error: str | None = None
        self._flush_lock = threading.Lock()
        # Stages a round while the flusher converts the next (without a helper: `flush`).
        self._write_pool = ThreadPoolExecutor(1, thread_name_prefix="aitrail-writer")
        self.flush_error: str | None = None
        self._flush_failed = False  # an attempt may have left files of the next flush seq
        self._lock_fd: int | None = None
        self._recovered: int | None = None
        self.stats = {"accepted_spans": 0, "duplicate_spans": 0, "rejected_spans": 0,
                      "accepted_log_records": 0, "duplicate_log_records": 0,
                      "rejected_log_records": 0, "flushes": 0, "flushed_spans": 0}

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def _checkpoint_path(self) -> Path:
        return self.wal_dir / "checkpoint.json"

    def recover(self) -> int:
        """Take this writer's lock, drop files of an unfinished flush, and queue the WAL
        after the last checkpoint (not flushing yet). Returns how many records it queued."""
        if self._recovered is not None:
            return self._recovered
        self.wal_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.wal_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StoreError(f"writer {self.writer_id!r} is in use by another process "
                             f"({self.wal_dir}); give this one another --writer-id") from None
        self._flush_seq, self._checkpoint = _read_checkpoint(self.wal_dir)
        self._delete_unfinished_flush_files()
        self._clear_staging()
        self._load_seen(self.wal_dir)
        replayed = 0
        for end, payload in self.wal.open():
            if end <= self._checkpoint:
                continue
            tenant, data, kind = decode_payload(payload)
            digests = self._remember_payload(tenant, data, kind)
            self._queue.append((end, tenant, len(data), kind, _pack(digests)))
            self._unflushed_bytes += len(data)
            replayed += 1
        if replayed:
            log.info("replayed %d WAL records after the last checkpoint", replayed)
        self._recovered = replayed
        return replayed

    def seed_dedupe(self, writer_ids: list[str]) -> int:
        """Remember the spans in other writers' unflushed WAL records (read-only, best
        effort): after a crash, an exporter's retry of a request that one collector process
        logged but never acknowledged may reach another process of the same collector."""
        seen = 0
        for writer in writer_ids:
            wal_dir = self.root / "_wal" / writer
            if writer == self.writer_id or not wal_dir.is_dir():
                continue
            _, checkpoint = _read_checkpoint(wal_dir)
            seen += self._load_seen(wal_dir)
            for end, payload in peek(wal_dir):
                if end > checkpoint:
                    self._remember_payload(*decode_payload(payload))
                    seen += 1
        return seen

    def start(self) -> int:
        """Recover (if not done yet) and start flushing. Returns the records replayed."""
        replayed = self.recover()
        self._accepting = True
        self._flusher = threading.Thread(target=self._flush_loop, name="aitrail-flusher",
                                         daemon=True)
        self._flusher.start()
        if self.limits.compact_interval_s > 0:
            self._compactor = threading.Thread(target=self._compact_loop,
                                               name="aitrail-compactor", daemon=True)
            self._compactor.start()
        return replayed

    def stop(self) -> None:
        """Stop accepting, flush everything, close the WAL."""
        self._accepting = False
        self._stopping = True
        self._wake.set()
        self._wake_compactor.set()
        if self._flusher is not None:
            self._flusher.join()
        if self._compactor is not None:
            self._compactor.join()  # finishes the tenant-hour in progress, then stops
        try:
            if not self.wal.failed:
                self.flush()
                self._sign_checkpoint()
        finally:
            self._write_pool.shutdown()
            if self._converter is not None:
                self._converter.close()
            try:
                self.wal.close()
            finally:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)  # releases the flock
                    self._lock_fd = None

    def _delete_unfinished_flush_files(self) -> None:
        # Logged before the files go, so `aitrail verify` never sees them simply vanish.
        retire_unfinished_flush(self.root, self.writer_id, self._flush_seq)
        pattern = re.compile(re.escape(self.writer_id) + r"-f(\d+)-\d+\.parquet$")
        for dataset in ("spans", "logs"):
            base = self.root / dataset
            for path in base.glob(f"*/*/*/{self.writer_id}-f*.parquet"):
                m = pattern.match(path.name)
                if m and int(m.group(1)) > self._flush_seq:
                    log.warning("removing %s: written by a flush that did not finish", path)
                    path.unlink()
                    sidecar_path(path).unlink(missing_ok=True)
            # Temporary files of a write that was cut short (readers never see them), and
            # sidecars of files that were never published.
            for path in base.glob(f"*/*/*/.{self.writer_id}-f*.parquet.tmp"):
                path.unlink(missing_ok=True)
            for path in base.glob(f"*/*/*/._{self.writer_id}-f*.tids.tmp"):
                path.unlink(missing_ok=True)
            for path in base.glob(f"*/*/*/_{self.writer_id}-f*.tids"):
                if not path.with_name(path.name[1:-len(".tids")] + ".parquet").exists():
                    path.unlink(missing_ok=True)

    def _clear_staging(self) -> None:
        """Drop staged files no round will publish (a crash, or a round given up on)."""
        self._staging.mkdir(exist_ok=True)
        for path in self._staging.iterdir():
            path.unlink(missing_ok=True)

    # -- accepting ---------------------------------------------------------------------------

    @staticmethod
    def _digest(tenant: str, item: bytes, prefix: bytes | None = None) -> int:
        """A span's (or log record's) 64-bit dedupe digest. `prefix`: the tenant's part,
        computed once per request by `_accept` (2.1 -> 1.5 us/span)."""
        # sha256 runs on the CPU's SHA extensions here: 1.4 us for a 1.35 KB span, blake2b 2.9.
        if prefix is None:
            prefix = tenant.encode() + b"\0"
        return int.from_bytes(hashlib.sha256(prefix + item).digest()[:8], "little")

    def _remember_payload(self, tenant: str, data: bytes, kind: bytes) -> list[int]:
        """Remember every item of a logged request; returns their digests."""
        digests = [self._digest(tenant, item)
                   for items in item_groups(WireRequest.FromString(data)) for item in items]
        self._remember_digests(digests)
        return digests

    def _remember_digests(self, digests) -> None:
        with self._seen_lock:
            self._seen.extend(digests)

    # The window survives restarts: each flush writes the digests of what it stored to
    # <wal>/seen/<flush seq>.bin before its checkpoint; start-up reads back the newest files
    # up to the window (a retry of a span flushed before a restart is still a duplicate).

    def _write_seen(self, seq: int, items: list[_Item]) -> None:
        path = self.wal_dir / "seen" / f"{seq:08d}.bin"
        path.parent.mkdir(exist_ok=True)
        with open(path, "wb") as f:
            for item in items:
                f.write(item[4])
            f.flush()
            os.fsync(f.fileno())
        # Older files beyond the window are not needed any more. Their sizes are kept in
        # memory (listing and stat-ing every file each round was 8% of the writer thread).
        if self._seen_files is None:
            self._seen_files = deque((f, f.stat().st_size // 8)
                                     for f in sorted(path.parent.glob("*.bin")) if f != path)
            self._seen_total = sum(n for _, n in self._seen_files)
        self._seen_files.append((path, sum(len(item[4]) for item in items) // 8))
        self._seen_total += self._seen_files[-1][1]
        files = self._seen_files
        while len(files) > 1 and self._seen_total - files[0][1] >= self.limits.dedupe_window:
            old, n = files.popleft()
            old.unlink(missing_ok=True)
            self._seen_total -= n

    def _load_seen(self, wal_dir: Path) -> int:
        files = sorted((wal_dir / "seen").glob("*.bin"))
        digests: list[int] = []
        for path in reversed(files):
            try:
                data = path.read_bytes()
            except OSError:  # a sibling trimmed it meanwhile
                continue
            digests[:0] = struct.unpack(f"<{len(data) // 8}Q", data[:len(data) // 8 * 8])
            if len(digests) >= self.limits.dedupe_window:
                break
        self._remember_digests(digests[-self.limits.dedupe_window:])
        return len(digests)

    def _check_can_accept(self, tenant: str) -> None:
        check_tenant(tenant)
        if not self._accepting:
            raise Unavailable("the collector is shutting down")
        if self.wal.failed:
            raise Unavailable(f"the collector cannot store data: {self.wal.failed}")
        if self._unflushed_bytes > self.limits.max_unflushed_bytes:
            # A short delay keeps the queue full: the flusher drains a round in about a second.
            raise Busy("the flusher is behind; retry later", retry_after_s=0.25)
        free = shutil.disk_usage(self.root).free
        if free < self.limits.min_free_disk_bytes:
            raise DiskFull(f"only {free // 2**20} MiB free on the store's disk",
                           retry_after_s=30.0)

    def accept(self, req: ExportTraceServiceRequest, tenant: str,
               raw: bytes | None = None) -> Accepted:
        """Store a request durably; returns only after its WAL record is fsync'd. Raises
        Busy, DiskFull or Unavailable (all retryable) when it cannot."""
        self._check_can_accept(tenant)
        raw = self._redact(self.redactor.redact_traces_raw, req, tenant, raw)
        groups = [ss.spans for rs in req.resource_spans for ss in rs.scope_spans]
        return self._accept(req, tenant, raw, groups, TRACES, "span",
                            lambda sp: (p := _span_problem(sp)) and
                            f"span {sp.span_id.hex() or '?'}: {p}")

    def accept_logs(self, req: ExportLogsServiceRequest, tenant: str,
                    raw: bytes | None = None) -> Accepted:
        """Like `accept`, for log records (`Accepted.spans` counts records)."""
        self._check_can_accept(tenant)
        raw = self._redact(self.redactor.redact_logs_raw, req, tenant, raw)
        groups = [sl.log_records for rl in req.resource_logs for sl in rl.scope_logs]
        return self._accept(req, tenant, raw, groups, LOGS, "log record", log_problem)

    @staticmethod
    def _redact(redact: Callable[[Any, str, bytes], bytes | None], req: Any, tenant: str,
                raw: bytes | None) -> bytes | None:
        """Mask `req` in place; returns its bytes (as received, or serialized for the scan)
        if they may still be written, None if `req` must be serialized again (they hold, or
        may hold, what was masked). Fails closed: a redactor error stores nothing and asks
        the exporter to retry."""
        try:
            return redact(req, tenant, req.SerializeToString() if raw is None else raw)
        except RedactionError as e:
            raise Unavailable(str(e), retry_after_s=1.0) from None

    def _accept(self, req: Any, tenant: str, raw: bytes | None, groups: list[Any],
                kind: bytes, noun: str, problem_of: Callable[[Any], str | None]) -> Accepted:
        """Drop invalid items (reported) and ones already stored (exporter retries), write the
        rest to the WAL as one record, and return once it is durable."""
        if raw is None:
            raw = req.SerializeToString()
        # The same request as item bytes (wire.py): digests without re-serializing, and the
        # record to log when some items are dropped.
        wire = WireRequest.FromString(raw)
        wire_groups = item_groups(wire)
        if [len(g) for g in wire_groups] != [len(g) for g in groups]:
            # A field repeated in an odd way (a resource sent in two pieces): log what we
            # decoded instead.
            wire = WireRequest.FromString(req.SerializeToString())
            wire_groups = item_groups(wire)
        rejected: list[str] = []
        changed = False
        stored = duplicates = 0
        new_digests: dict[int, None] = {}  # ordered set
        digest, seen = self._digest, self._seen
        prefix = tenant.encode() + b"\0"
        with self._seen_lock:
            for items, raw_items in zip(groups, wire_groups, strict=True):
                keep = []
                for item, item_bytes in zip(items, raw_items, strict=True):
                    problem = problem_of(item)
                    if problem:
                        rejected.append(problem)
                        continue
                    d = digest(tenant, item_bytes, prefix)
                    if d in seen or d in new_digests:
                        duplicates += 1
                        continue
                    new_digests[d] = None
                    keep.append(item_bytes)
                if len(keep) != len(raw_items):
                    changed = True
                    del raw_items[:]
                    raw_items.extend(keep)
                stored += len(keep)
        message = ""
        if rejected:
            message = f"{len(rejected)} {noun}(s) rejected: " + "; ".join(rejected[:5])
            if len(rejected) > 5:
                message += f"; and {len(rejected) - 5} more"
        counted = "spans" if kind == TRACES else "log_records"
        self.stats[f"rejected_{counted}"] += len(rejected)
        self.stats[f"duplicate_{counted}"] += duplicates
        if stored:
            self._append(tenant, wire.SerializeToString() if changed else raw, kind,
                         new_digests)
            self.stats[f"accepted_{counted}"] += stored
        return Accepted(stored, len(rejected), duplicates, message)

    def _append(self, tenant: str, data: bytes, kind: bytes,
                new_digests: dict[int, None]) -> None:
        payload = (_payload_head(tenant, kind), data)  # encode_payload, in two parts
        packed = _pack(new_digests)

        def enqueue(end: Position) -> None:
            with self._queue_lock:
                self._queue.append((end, tenant, len(data), kind, packed))
                self._unflushed_bytes += len(data)

        try:
            self.wal.append(payload, on_written=enqueue)
        except WALFailed as e:
            raise Unavailable(f"the collector cannot store data: {e}") from None
        self._remember_digests(new_digests)
        if self._unflushed_bytes >= self.limits.flush_round_bytes:
            self._wake.set()  # a whole round is waiting: no need to wait for the interval

    # -- flushing ----------------------------------------------------------------------------

    def _flush_loop(self) -> None:
        backoff = self.limits.flush_interval_s
        while not self._stopping:
            self._wake.wait(timeout=backoff)
            self._wake.clear()
            if self._stopping:
                break
            try:
                self.flush()
                self.flush_error = None
                backoff = self.limits.flush_interval_s
            except Exception as e:  # keep the WAL; retry with backoff, report the cause
                self.flush_error = f"{type(e).__name__}: {e}"
                log.error("flush failed, will retry: %s", self.flush_error)
                backoff = min(backoff * 2, 30.0)

    def _compact_loop(self) -> None:
        while not self._stopping:
            self._wake_compactor.wait(timeout=self.limits.compact_interval_s)
            if self._stopping:
                break
            try:
                report = compact_store(self.root, grace_s=self.limits.compact_grace_s,
                                       should_stop=lambda: self._stopping)
                self.compact_error = "; ".join(report.skipped) or None
                if report.files_out:
                    log.info("compacted %d tenant-hours: %d files -> %d", report.partitions,
                             report.files_in, report.files_out)
            except Exception as e:  # never take the collector down; try again next time
                self.compact_error = f"{type(e).__name__}: {e}"
                log.error("compaction failed: %s", self.compact_error)

    def flush(self) -> int:
        """Write every durable queued record to Parquet, in rounds of at most
        `limits.flush_round_bytes` (each its own files and checkpoint); returns spans
        written. Several rounds are in hand: the next ones are converted and staged (by the
        helper, store/convert_worker.py, or here: converted by this thread, written by the
        writer thread, without the GIL) while the first is published."""
        # Only what is durable now: under steady load, chasing new arrivals would make a
        # tiny file every few ms instead of one flush per interval.
        target = self.wal.synced
        total = 0
        with self._flush_lock:
            rounds: deque[_Round] = deque()
            # The helper holds a round in each of its three threads; here, one is written
            # while the next is converted (each converted round in hand is ~10 MB).
            depth = 3 if self._converter is not None else 2
            after = None
            try:
                while True:
                    while len(rounds) < depth and (items := self._take(target, after)):
                        after = items[-1][0]
                        rounds.append(self._stage(items, self._flush_seq + len(rounds) + 1))
                    if not rounds:
                        return total
                    self._wait(rounds)
                    total += self._finish(rounds.popleft())
            except BaseException:
                self._abandon(rounds)
                raise

    def _take(self, target: Position, after: Position | None) -> list[_Item]:
        """The next round: queued records after `after` (the round being written) up to
        `target`, at most about `flush_round_bytes`."""
        synced = min(self.wal.synced, target)
        items: list[_Item] = []
        size = 0
        with self._queue_lock:
            for item in self._queue:
                if after is not None and item[0] <= after:
                    continue
                if item[0] > synced or (items and size >= self.limits.flush_round_bytes):
                    break
                items.append(item)
                size += item[2]
        return items

    def _finish(self, rnd: _Round) -> int:
        """Publish one staged round, checkpoint it, drop it from the queue, trim."""
        items, seq = rnd.items, rnd.seq
        if self._flush_failed:
            # A failed attempt may have published some files under this seq. A retry
            # carries more data, so its partitions (and file numbers) can differ, and
            # files it does not overwrite would hold a second copy of their spans.
            self._delete_unfinished_flush_files()
        self._flush_failed = True
        with publish_lock(self.root):
            for staged in rnd.staged:
                publish(self.root, self.writer_id, staged)
        end = items[-1][0]
        self._write_seen(seq, items)
        self._write_checkpoint(seq, end)
        # From the rename on, a restart reads this checkpoint: memory must agree even if
        # the directory fsync below fails, or the retry above would delete its files.
        self._flush_seq, self._checkpoint = seq, end
        self._flush_failed = False
        with self._queue_lock:
            for _ in items:
                self._unflushed_bytes -= self._queue.popleft()[2]
        # The rename must be durable before the WAL records it covers are trimmed.
        fsync_dir(self.wal_dir)
        self.wal.trim(end)
        self.stats["flushes"] += 1
        self.stats["flushed_spans"] += rnd.spans
        self._sign_checkpoint(CHECKPOINT_INTERVAL_S)
        return rnd.spans

    def _sign_checkpoint(self, every_s: float = 0.0) -> None:
        """A signed checkpoint of this writer's integrity log (docs/integrity.md)."""
        try:
            leaf_log(self.root, self.writer_id).checkpoint_every(every_s)
        except (OSError, StoreError) as e:  # the data is safe; only the signature is late
            log.error("cannot write the integrity checkpoint: %s", e)

    def _writer(self, seq: int, first: int = 1) -> ParquetWriter:
        """Names files <writer>-f<seq>-<n>.parquet from n = `first`."""
        writer = ParquetWriter(self.root, f"{self.writer_id}-f{seq:08d}",
                               compression_level=FLUSH_COMPRESSION_LEVEL, log=self.writer_id)
        writer.seq = first - 1
        return writer

    def _stage(self, items: list[_Item], seq: int) -> _Round:
        """Start staging a round: its log records here and now (few), its spans at the helper
        or in the writer thread (`_wait` collects them)."""
        rnd = _Round(items, seq)
        read = self.wal.read_tail
        logs = [item for item in items if item[3] == LOGS]
        if logs:
            batch = LogBatch()
            for end, tenant, size, _, _ in logs:
                append_logs_request(batch, ExportLogsServiceRequest.FromString(read(end, size)),
                                    tenant)
            if batch.rows:
                writer = self._writer(seq)
                rnd.staged += writer.stage_table(batch.to_table(), batch.tenants, batch.hours,
                                                 self._staging, dataset="logs")
                rnd.first = writer.seq + 1
        traces = [(end, tenant, size) for end, tenant, size, kind, _ in items if kind != LOGS]
        if not traces:
            return rnd
        if self._converter is not None:
            try:
                rnd.helper = self._converter.submit((
                    f"{self.writer_id}-f{seq:08d}", rnd.first, str(self._staging),
                    [(*self.wal.locate(end, size), size, tenant) for end, tenant, size in traces]))
                return rnd
            except ConvertError as e:
                log.warning("%s; staging in the collector", e)
        self._stage_here(rnd)
        return rnd

    def _stage_here(self, rnd: _Round) -> None:
        """Convert a round's spans in this thread and stage them in the writer thread."""
        rows = SpanRows(self.normalizer)  # WAL records are requests as received
        for end, tenant, size, kind, _ in rnd.items:
            if kind != LOGS:
                rows.add(self.wal.read_tail(end, size), tenant)
        table, tenants, hours, _ = rows.finish()  # invalid spans never reach the WAL
        writer = self._writer(rnd.seq, rnd.first)
        rnd.pending = self._write_pool.submit(
            lambda: ([] if table is None else
                     writer.stage_table(table, tenants, hours, self._staging), len(tenants)))

    def _wait(self, rounds: deque[_Round]) -> None:
        """Until the first round is staged. If the helper fails, every round it held is
        staged here instead."""
        rnd = rounds[0]
        if rnd.helper is not None:
            try:
                files, spans = self._converter.result(rnd.helper)
                prefix = f"{self.writer_id}-f{rnd.seq:08d}-"
                if any(not f.dest.name.startswith(prefix) for f in files):
                    raise ConvertError(f"the helper answered for another round than {prefix}")
                rnd.staged += files
                rnd.spans += spans
                rnd.helper = None
            except ConvertError as e:
                log.warning("%s; staging in the collector", e)
                # Rounds a new helper took after a failed submit are restaged too: their
                # answers must not come back for a later round.
                self._converter.kill()
                for r in rounds:
                    if r.helper is not None:
                        r.helper = None
                        self._stage_here(r)
        if rnd.pending is not None:
            files, spans = rnd.pending.result()
            rnd.pending = None
            rnd.staged += files
            rnd.spans += spans

    def _abandon(self, rounds: deque[_Round]) -> None:
        """A flush failed: nothing of its unpublished rounds may be left being written when
        the next attempt stages them again."""
        if any(r.helper is not None for r in rounds):
            self._converter.kill()
        for r in rounds:
            if r.pending is not None:
                with contextlib.suppress(Exception):
                    r.pending.result()
        with contextlib.suppress(OSError):
            self._clear_staging()

    def _write_checkpoint(self, seq: int, end: Position) -> None:
        """Temp file, fsync, rename; the caller fsyncs the directory."""
        tmp = self._checkpoint_path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps({"flush_seq": seq, "segment": end.segment,
                                  "offset": end.offset, "time": time.time()}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._checkpoint_path)
