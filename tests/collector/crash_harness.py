"""Kill `aitrail serve` at random moments under load; check what it acknowledged.

Used by tests/collector/test_crash.py (a few trials) and benchmarks/crash_soak.py (many).
Each trial starts the real CLI as a subprocess on the same store and writer id (so every
start replays what the last one left in its WAL), sends OTLP/gRPC requests from a few
client threads, and ends it with SIGKILL (or, for some trials, SIGTERM: a clean drain under
load) at a moment drawn from a seeded RNG. At the end one more start and a SIGTERM flush
everything, and the store must hold every acknowledged span exactly once, no span twice,
and nothing that was never sent.

A SIGKILL tests crash consistency, not power loss: the kernel keeps what the process wrote
even if it was not fsync'd (trust.md section 4), so this finds ordering and replay bugs, not
missing fsyncs.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import random
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from aitrail.store.query import Store
from aitrail.store.wal import Position, iter_records

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
STARTUP_TIMEOUT_S = 60.0  # a replay of a large backlog on a slow machine
CALL_TIMEOUT_S = 30.0
_PORT = re.compile(r"OTLP/gRPC on 127\.0\.0\.1:(\d+)")
_REPLAYED = re.compile(r"replayed (\d+) WAL record")


class CrashCheckFailed(AssertionError):
    """The store or the server broke a promise; the message says which and how."""


WORKERS = 2  # collector processes (each its own WAL), as `aitrail serve` runs on 2 cores


def serve_command(store: Path, writer_id: str, workers: int = WORKERS) -> list[str]:
    return [sys.executable, "-m", "aitrail.cli", "--store", str(store), "serve",
            "--grpc", "127.0.0.1:0", "--http", "off", "--writer-id", writer_id,
            "--workers", str(workers)]


def writer_ids(writer_id: str, workers: int = WORKERS) -> list[str]:
    """The WAL directories of a collector: one per process."""
    return [writer_id] if workers == 1 else [f"{writer_id}-{i}" for i in range(workers)]


class Server:
    """`aitrail serve` as a subprocess in a process group of its own (with its collector
    processes). The constructor returns once the startup line has named the gRPC
    port; `close()` (also on leaving a `with`) kills whatever of the group still runs."""

    def __init__(self, store: Path, writer_id: str, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in close()
        env = {**os.environ, "XDG_CONFIG_HOME": str(log.parent)}  # no user aitrail.toml
        env.pop("AITRAIL_CONFIG", None)
        self.proc = subprocess.Popen(serve_command(store, writer_id), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     env=env, start_new_session=True)
        self.output: list[str] = []  # stdout lines, complete after close()
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            self.startup_line = self._wait_for_line(_PORT)
        except BaseException:
            self.close()
            raise
        self.port = int(_PORT.search(self.startup_line).group(1))
        m = _REPLAYED.search(self.startup_line)
        self.replayed = int(m.group(1)) if m else 0

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_line(self, pattern: re.Pattern) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise CrashCheckFailed(f"no startup line within {STARTUP_TIMEOUT_S:g} s"
                                       + self.log_tail()) from None
            if line is None:
                raise CrashCheckFailed(f"aitrail serve exited ({self.proc.wait()}) before "
                                       "its startup line" + self.log_tail())
            if pattern.search(line):
                return line

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\nserver stderr (last lines):\n" + "\n".join(text)

    def kill(self) -> None:
        """The whole collector dies at once, as when its container or cgroup is killed:
        the supervisor and its collector processes."""
        with contextlib.suppress(ProcessLookupError):  # all of it has exited already
            os.killpg(self.proc.pid, signal.SIGKILL)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise CrashCheckFailed(f"aitrail serve still running {timeout_s:g} s after it "
                                   "should have exited" + self.log_tail()) from None

    def close(self) -> None:
        self.kill()  # also any worker still exiting after a clean stop: they hold stdout
        self.proc.wait()
        self._reader.join()
        self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_request(rng: random.Random, ids: Iterator[int]
                 ) -> tuple[ExportTraceServiceRequest, list[str]]:
    """A small trace (2-5 spans, span ids never used before) and its span ids. Traces start
    in one of the last 4 hours, so a flush writes several partition files and a kill can
    land between them."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", f"crash-{rng.randrange(3)}"
    ss = rs.scope_spans.add()
    ss.scope.name = "crash_harness"
    trace_id = rng.randbytes(15) + b"\x01"
    now = time.time_ns() - rng.randrange(4) * 3_600_000_000_000
    span_ids = []
    for i in range(rng.randint(2, 5)):
        sp = ss.spans.add()
        sp.trace_id, sp.span_id = trace_id, struct.pack(">Q", next(ids))
        if i:
            sp.parent_span_id = ss.spans[0].span_id
        sp.name, sp.kind = ("invoke_agent soak", 1) if i == 0 else ("chat soak-model", 3)
        sp.start_time_unix_nano, sp.end_time_unix_nano = now + i, now + i + 1_000_000
        attr = sp.attributes.add()
        attr.key = "gen_ai.operation.name"
        attr.value.string_value = "invoke_agent" if i == 0 else "chat"
        span_ids.append(sp.span_id.hex())
    return req, span_ids


class Load:
    """Client threads, each exporting over its own channel (connection), so the kernel
    spreads them over the collector's processes, until `stop()`; a request's span ids count
    as acknowledged only if the call returned OK with nothing rejected."""

    def __init__(self, port: int, threads: int, rng: random.Random, ids: Iterator[int]) -> None:
        self.channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _ in range(threads)]
        self.sent: list[str] = []
        self.acked: list[str] = []
        self.errors: Counter[str] = Counter()
        self.failures: list[str] = []
        self._ids_lock = threading.Lock()
        self._ids = ids
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True,
                                          args=(random.Random(rng.random()), ch))
                         for ch in self.channels]
        for t in self._threads:
            t.start()

    def _next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    def _run(self, rng: random.Random, channel: grpc.Channel) -> None:
        export = channel.unary_unary(
            EXPORT, request_serializer=ExportTraceServiceRequest.SerializeToString,
            response_deserializer=ExportTraceServiceResponse.FromString)
        ids = iter(self._next_id, None)
        while not self._stop.is_set():
            req, span_ids = make_request(rng, ids)
            self.sent.extend(span_ids)
            try:
                resp = export(req, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as e:
                self.errors[e.code().name] += 1
                # Back off as an exporter would: spinning on a draining or dead server would
                # take the CPU it needs to drain and flush (stop() ends the wait at once).
                self._stop.wait(0.02)
                continue
            except Exception as e:  # report it; a dead client thread would look like success
                self.failures.append(f"{type(e).__name__}: {e}")
                return
            if resp.partial_success.rejected_spans:
                self.failures.append(f"spans rejected: {resp.partial_success.error_message}")
            else:
                self.acked.extend(span_ids)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        for ch in self.channels:
            ch.close()


@dataclass
class Trial:
    number: int
    signal: str  # "KILL" or "TERM"
    delay_s: float  # after the startup line
    replayed: int  # WAL records the start replayed
    acked: int  # spans acknowledged in this trial
    sent: int
    errors: dict[str, int]
    unfinished_files: int  # Parquet files of a flush the kill interrupted
    temp_files: int  # half-written Parquet temp files (never read) left by this or an
    # earlier kill; one stays until a later flush writes a file of the same name


@dataclass
class SoakResult:
    trials: list[Trial] = field(default_factory=list)
    acked: int = 0  # distinct acknowledged span ids, all checked
    stored: int = 0  # span rows in the store at the end
    stored_unacked: int = 0  # sent, not acknowledged (the kill came first), stored anyway
    final_replayed: int = 0


def _flush_seq(wal_dir: Path) -> int:
    path = wal_dir / "checkpoint.json"
    return orjson.loads(path.read_bytes())["flush_seq"] if path.exists() else 0


def unfinished_flush_files(store: Path, writer_id: str) -> int:
    """Files a restart will delete: written by a flush newer than the checkpoint."""
    total = 0
    for w in writer_ids(writer_id):
        seq = _flush_seq(store / "_wal" / w)
        pattern = re.compile(re.escape(w) + r"-f(\d+)-\d+\.parquet$")
        names = (p.name for p in (store / "spans").glob(f"*/*/*/{w}-f*.parquet"))
        total += sum(1 for n in names if (m := pattern.match(n)) and int(m.group(1)) > seq)
    return total


def check_readable(store: Path) -> None:
    """DuckDB reads every column of every published file (a kill must never leave a file
    half-written under its final name)."""
    if not (store / "spans").exists():
        return
    with Store(store) as st:
        st.sql("select count(distinct span_id) as n, sum(length(name)) as c, "
               "max(duration_ms) as d, count(attributes) as a from spans")


# When the signal comes, in seconds after the startup line: half the trials early (during
# replay and load), half from 2 s on, when the collector's first flush runs (its interval).
EARLY = (0.02, 1.0)
LATE = (2.0, 3.2)


def run_trial(store: Path, writer_id: str, number: int, rng: random.Random,
              ids: Iterator[int], threads: int, term_share: float,
              log: Path, acked: set[str], sent: set[str]) -> Trial:
    how = "TERM" if rng.random() < term_share else "KILL"
    delay = rng.uniform(*(EARLY if rng.random() < 0.5 else LATE))
    with Server(store, writer_id, log) as server:
        load = Load(server.port, threads, rng, ids)
        end = server.terminate if how == "TERM" else server.kill
        timer = threading.Timer(delay, end)
        timer.start()
        try:
            code = server.wait(delay + 60.0)
        finally:
            timer.cancel()
            load.stop()
        expected = 0 if how == "TERM" else -signal.SIGKILL
        if code != expected:
            raise CrashCheckFailed(f"trial {number}: aitrail serve exited with {code} after "
                                   f"SIG{how}, expected {expected}" + server.log_tail())
        if load.failures:
            raise CrashCheckFailed(f"trial {number}: client failures: {load.failures[:3]}")
        replayed = server.replayed
    if how == "TERM" and not any(line.startswith("aitrail serve: stopped;")
                                 for line in server.output):
        raise CrashCheckFailed(f"trial {number}: exit code 0 without the line saying it "
                               f"stopped after draining: {server.output}")
    acked.update(load.acked)
    sent.update(load.sent)
    check_readable(store)
    return Trial(number, how, round(delay, 3), replayed, len(load.acked), len(load.sent),
                 dict(load.errors), unfinished_flush_files(store, writer_id),
                 sum(1 for _ in (store / "spans").glob("*/*/*/.*.tmp")))


def verify(store: Path, writer_id: str, acked: set[str], sent: set[str]) -> tuple[int, int]:
    """After a clean stop: every acknowledged span once, none twice, none unknown, nothing
    left to replay. Returns (rows, rows never acknowledged)."""
    with Store(store) as st:
        rows = st.sql("select span_id, count(*) as n from spans group by span_id",
                      limit=None).rows
    counts = {r["span_id"]: r["n"] for r in rows}
    problems = []
    missing = acked - counts.keys()
    if missing:
        problems.append(f"{len(missing)} acknowledged span(s) missing, e.g. "
                        f"{sorted(missing)[:5]}")
    twice = sorted(k for k, n in counts.items() if n > 1)
    if twice:
        problems.append(f"{len(twice)} span(s) stored more than once, e.g. {twice[:5]}")
    unknown = counts.keys() - sent
    if unknown:
        problems.append(f"{len(unknown)} span(s) stored that were never sent")
    for w in writer_ids(writer_id):
        wal_dir = store / "_wal" / w
        cp = wal_dir / "checkpoint.json"
        cp = orjson.loads(cp.read_bytes()) if cp.exists() else {"segment": 0, "offset": 0}
        checkpoint = Position(cp["segment"], cp["offset"])
        left = [end for end, _ in iter_records(wal_dir) if end > checkpoint]
        if left:
            problems.append(f"{w}: {len(left)} WAL record(s) after the checkpoint of a "
                            "clean stop")
    if problems:
        raise CrashCheckFailed("; ".join(problems))
    return sum(counts.values()), len(counts.keys() - acked)


def soak(store: Path, trials: int, seed: int, threads: int = 3, term_share: float = 0.2,
         writer_id: str = "crash", log: Path | None = None,
         on_trial: Callable[[Trial], None] | None = None) -> SoakResult:
    """Run the trials on one store, then a clean start and stop, then verify. Raises
    CrashCheckFailed on the first broken promise."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    log = log or store.parent / f"{store.name}-serve.log"
    rng = random.Random(seed)
    ids = itertools.count(1)
    acked: set[str] = set()
    sent: set[str] = set()
    result = SoakResult()
    for n in range(1, trials + 1):
        trial = run_trial(store, writer_id, n, rng, ids, threads, term_share, log, acked,
                          sent)
        result.trials.append(trial)
        if on_trial is not None:
            on_trial(trial)
    with Server(store, writer_id, log) as server:
        result.final_replayed = server.replayed
        server.terminate()
        code = server.wait(60.0)
        if code != 0:
            raise CrashCheckFailed(f"the final SIGTERM exited with {code}" + server.log_tail())
    check_readable(store)
    result.stored, result.stored_unacked = verify(store, writer_id, acked, sent)
    result.acked = len(acked)
    return result
