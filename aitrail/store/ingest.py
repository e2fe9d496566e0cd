"""The ingest pipeline shared by `aitrail ingest` and the collector:
decode -> normalize -> Parquet.

Decoding and normalization are Python and hold the GIL. With `jobs > 1` they run in worker
processes (performance.md: "throughput comes from ... using both cores"), each returning an
Arrow table; this process sorts and writes them, so a big input still makes one file per
partition rather than one per worker (small files are what slows queries down). Results are
merged in submission order: the output does not depend on which worker finished first.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .config import check_tenant
from .errors import BadInput
from .integrity.log import leaf_log
from .normalize import Normalizer
from .otlp_decode import decode_payload, read_file
from .records import SpanRows
from .redaction import RedactionError, RedactionPolicy, Redactor
from .writer import ParquetWriter

# Write files every this many spans: bounds memory on big inputs.
FLUSH_SPANS = 200_000
# Payload bytes sent to a worker at a time: big enough to amortise pickling, small enough to
# keep every worker busy on a few MB of input.
CHUNK_BYTES = 2 * 1024 * 1024


@dataclass
class IngestReport:
    spans: int = 0
    files_written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "file:line: what is wrong"
    rejected: list[str] = field(default_factory=list)  # "file:line: span ...: why"
    requests: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors and not self.rejected


@dataclass
class Converted:
    """What a worker returns for one chunk of payloads."""

    table: pa.Table | None
    tenants: list[str]
    hours: list[int]
    requests: int
    errors: list[str]
    rejected: list[str]


_worker_normalizers: dict[tuple, Normalizer] = {}
_worker_redactors: dict[str, Redactor] = {}


def convert_payloads(items: list[tuple[str, str, bytes, str]],
                     mapping: dict[str, list[str]] | None,
                     redaction: tuple[str, RedactionPolicy | None]) -> Converted:
    """Decode, redact and normalize (where, kind, data, tenant) payloads into one Arrow
    table. Runs in worker processes: everything it needs comes in its arguments (the
    redaction key is read from the store, `redaction` is (store root, policy))."""
    key = tuple(sorted((k, tuple(v)) for k, v in (mapping or {}).items()))
    normalizer = _worker_normalizers.get(key)
    if normalizer is None:
        normalizer = _worker_normalizers[key] = Normalizer(mapping)
    redactor = _worker_redactors.get(redaction[0])
    if redactor is None:  # one Ingester (one policy) per worker pool
        redactor = _worker_redactors[redaction[0]] = Redactor(*redaction)
    rows = SpanRows(normalizer)
    errors: list[str] = []
    rejected: list[str] = []
    requests = 0
    for where, kind, data, tenant in items:
        try:
            reqs = decode_payload(kind, data)
        except BadInput as e:
            errors.append(f"{where}: {e}")
            continue
        for req in reqs:
            try:
                clean = _redacted_bytes(redactor, req, tenant,
                                        data if kind == "protobuf" else None)
            except RedactionError as e:  # fail closed: the request is not stored
                errors.append(f"{where}: {e}")
                continue
            requests += 1
            rejected += [f"{where}: {msg}" for msg in rows.add(clean, tenant)]
    table, tenants, hours, _ = rows.finish()
    return Converted(table, tenants, hours, requests, errors, rejected)


def _redacted_bytes(redactor: Redactor, req: ExportTraceServiceRequest, tenant: str,
                    raw: bytes | None) -> bytes:
    """The request with its secrets masked, serialized: `raw` (the bytes it was parsed from)
    when nothing in them was masked, saving a serialization."""
    if raw is None:
        raw = req.SerializeToString()
    clean = redactor.redact_traces_raw(req, tenant, raw)
    return clean if clean is not None else req.SerializeToString()


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _die_with_parent(parent_pid: int) -> None:
    """Pool worker start-up: if the parent is killed (SIGKILL leaves it no time to shut the
    pool down), its workers must not linger as orphans. A watchdog thread rather than
    prctl(PR_SET_PDEATHSIG): that signal follows the parent *thread* that spawned the worker,
    and pools spawn from whichever thread submits first."""
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
    # Ctrl-C and SIGTERM reach the whole process group; the parent decides when workers stop
    # (it still needs them for its last flush).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def worker_pool(jobs: int) -> ProcessPoolExecutor:
    """Worker processes for conversion. Spawned, not forked: fork() of a process running
    threads (gRPC's, the flusher) is unsafe, and spawned workers are our direct children, so
    they can die with us."""
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))


class Ingester:
    """Turns requests into Parquet files under `root`."""

    def __init__(self, root: Path, tenant: str = "default",
                 normalizer: Normalizer | None = None, writer_id: str | None = None,
                 jobs: int = 1, mapping: dict[str, list[str]] | None = None,
                 redaction: RedactionPolicy | None = None) -> None:
        self.tenant = check_tenant(tenant)
        self.mapping = mapping
        self.root = Path(root)
        self.redaction = redaction
        self.redactor = Redactor(root, redaction)
        self.normalizer = normalizer or Normalizer(mapping)
        self.writer = ParquetWriter(root, writer_id)
        self.rows = SpanRows(self.normalizer)
        self.report = IngestReport()
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[tuple[str, str, bytes, str]] = []
        self._pending_bytes = 0
        self._inflight: deque[Future[Converted]] = deque()
        self._done: list[Converted] = []
        self._done_spans = 0

    # -- in-process path (the collector hands over decoded requests) ------------------------

    def add(self, req: ExportTraceServiceRequest, where: str = "",
            raw: bytes | None = None) -> None:
        """One decoded request (`raw`: the exact bytes it was parsed from, if at hand)."""
        try:
            clean = _redacted_bytes(self.redactor, req, self.tenant, raw)
        except RedactionError as e:  # fail closed: the request is not stored
            self.report.errors.append(f"{where}: {e}" if where else str(e))
            return
        self.report.requests += 1
        for msg in self.rows.add(clean, self.tenant):
            self.report.rejected.append(f"{where}: {msg}" if where else msg)
        if len(self.rows) >= FLUSH_SPANS:
            self._write_batch()

    def _write_batch(self) -> None:
        table, tenants, hours, _ = self.rows.finish()
        if table is not None:
            self.report.files_written += self.writer.write_table(table, tenants, hours)
            self.report.spans += table.num_rows

    # -- payload path (files; decoded in workers when jobs > 1) ------------------------------

    def add_payload(self, where: str, kind: str, data: bytes) -> None:
        """One undecoded request (see otlp_decode.read_file)."""
        if self.jobs <= 1:
            try:
                reqs = decode_payload(kind, data)
            except BadInput as e:
                self.report.errors.append(f"{where}: {e}")
                return
            for req in reqs:
                self.add(req, where, data if kind == "protobuf" else None)
            return
        self._pending.append((where, kind, data, self.tenant))
        self._pending_bytes += len(data)
        if self._pending_bytes >= CHUNK_BYTES:
            self._submit()

    def _submit(self) -> None:
        if not self._pending:
            return
        if self._pool is None:
            self._pool = worker_pool(self.jobs)
        self._inflight.append(self._pool.submit(convert_payloads, self._pending, self.mapping,
                                                (str(self.root), self.redaction)))
        self._pending, self._pending_bytes = [], 0
        while len(self._inflight) > 2 * self.jobs:  # bound memory: wait for the oldest
            self._collect(self._inflight.popleft().result())

    def _collect(self, c: Converted) -> None:
        self.report.requests += c.requests
        self.report.errors += c.errors
        self.report.rejected += c.rejected
        if c.table is not None:
            self._done.append(c)
            self._done_spans += c.table.num_rows
        if self._done_spans >= FLUSH_SPANS:
            self._write_done()

    def _write_done(self) -> None:
        if not self._done:
            return
        table = pa.concat_tables([c.table for c in self._done if c.table is not None])
        tenants = [t for c in self._done for t in c.tenants]
        hours = [h for c in self._done for h in c.hours]
        self.report.files_written += self.writer.write_table(table, tenants, hours)
        self.report.spans += table.num_rows
        self._done, self._done_spans = [], 0

    def flush(self) -> None:
        """Write everything received so far."""
        self._submit()
        while self._inflight:
            self._collect(self._inflight.popleft().result())
        self._write_done()
        self._write_batch()

    def close(self) -> IngestReport:
        """Write everything, stop the workers, and return the report."""
        try:
            self.flush()
            if self.report.files_written:  # a signed checkpoint of what this run logged
                leaf_log(self.root, self.writer.log).checkpoint()
        finally:
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
                self._pool = None
        return self.report

    def add_files(self, paths: Iterable[str | Path],
                  progress: Callable[[str], None] | None = None) -> IngestReport:
        try:
            for path in paths:
                if progress:
                    progress(str(path))
                for payload in read_file(path):
                    if payload.error is not None:
                        self.report.errors.append(f"{payload.where}: {payload.error}")
                    else:
                        self.add_payload(payload.where, payload.kind, payload.data)
        finally:
            self.close()
        return self.report

