"""Span conversion and staging in a helper process, for the collector's flusher.

One collector process holds one GIL. Converting spans (the compiled converter plus the
normalizer, Python) and writing them (row digests, Parquet, zstd, the file hash) were most
of the collector's CPU besides gRPC, and the gRPC threads, the WAL and the flusher waited on
them (benchmarks/ingest_grpc.py: with the writing left out, 45k spans/s instead of 27k). The
flusher hands each round's WAL records to this helper, which reads them from the WAL files
itself, converts them (records.SpanRows, the same code as in-process) and stages the round's
files in the writer's staging directory (writer.stage: temporary name, fsync, sidecar, row
digests, file facts). The collector only publishes them: renames and integrity log entries,
under the publish lock, in round order. So the work runs on the other core, in a process
that imports no gRPC and holds no requests. The helper converts one round while it writes
the one before (Parquet and zstd release the GIL) and fsyncs the one before that, so the
collector keeps three rounds in hand.

The helper keeps nothing: if it dies, its rounds are staged again (by a new helper, or in
the collector itself when none can start), from the WAL, which is trimmed only after the
round's files are published. It exits when its stdin closes, so it never outlives the
collector.

Protocol on stdin/stdout: frames of a little-endian u64 length and a pickle. First frame:
the mapping ([mapping] of aitrail.toml), the store root and the Parquet compression level;
then one frame per round, (file name prefix, first file number, staging directory, list of
(WAL segment path, offset, size, tenant)), answered in order by (staged files, spans).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from typing import Any


class ConvertError(Exception):
    """The helper failed, is gone or too slow: convert the round again."""


_LEN = struct.Struct("<Q")
# A round's frame names its WAL records and its answer its staged files: a few KB each.
# Anything far larger is a broken peer.
_MAX_FRAME = 1 << 26


def _send(fd: int, obj: Any) -> None:
    body = pickle.dumps(obj, protocol=5)
    data = memoryview(_LEN.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data):]


def _recv(fd: int, timeout_s: float | None = None) -> Any:
    """One frame from a pipe; None if the pipe closed between frames. ConvertError if it
    closes inside one or, with `timeout_s`, the frame does not come whole in time: a helper
    that stops answering must not stall the flusher (and with it every exporter)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def exactly(n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise ConvertError(f"no answer within {timeout_s:g} s")
            chunk = os.read(fd, n - got)
            if not chunk:
                raise EOFError(got)
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    try:
        (n,) = _LEN.unpack(exactly(_LEN.size))
    except EOFError as e:
        if e.args[0] == 0:
            return None
        raise ConvertError("the pipe closed inside a frame") from None
    if n > _MAX_FRAME:
        raise ConvertError(f"a frame of {n} bytes")
    try:
        return pickle.loads(exactly(n))
    except EOFError:
        raise ConvertError("the pipe closed inside a frame") from None


def _pread(path: str, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, size, offset)
    finally:
        os.close(fd)
    if len(data) != size:
        raise OSError(f"{path}: record at byte {offset} is cut short")
    return data


def main() -> int:
    """The helper: stage rounds until stdin closes."""
    # The collector decides when to stop; Ctrl-C reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import queue
    from pathlib import Path

    from .memory import lean_allocators
    from .normalize import Normalizer
    from .records import SpanRows
    from .writer import ParquetWriter
    from .writer import seal as seal_file

    lean_allocators()

    # The writer thread calls into Arrow and zstd dozens of times a round, giving up the GIL
    # each time, and must take it back from the converting thread: by default that waits up
    # to 5 ms each time (benchmarks/ingest_grpc.py: a round staged in ~150 ms instead of ~75).
    sys.setswitchinterval(0.0005)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    init = _recv(stdin)
    if init is None:
        return 0
    mapping, root, level = init
    rows = SpanRows(Normalizer(mapping))
    # Three threads, a round at each: this one converts, `write` writes Parquet (zstd
    # without the GIL), `seal` fsyncs, writes the sidecar and answers, in round order.
    converted: queue.Queue = queue.Queue(maxsize=1)
    written: queue.Queue = queue.Queue(maxsize=1)

    def write() -> None:
        while (job := converted.get()) is not None:
            name, first, tmp_dir, (table, tenants, hours, _) = job
            writer = ParquetWriter(Path(root), name, compression_level=level)
            writer.seq = first - 1
            written.put(([] if table is None else
                         writer.write_tmp_table(table, tenants, hours, Path(tmp_dir)),
                         len(tenants)))
        written.put(None)

    def seal() -> None:
        while (job := written.get()) is not None:
            files, spans = job
            _send(stdout, ([seal_file(w) for w in files], spans))

    def run(target) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except BaseException:  # the collector sees the pipe close and stages it itself
                traceback.print_exc()
                os._exit(1)

        t = threading.Thread(target=guarded, name=f"aitrail-helper-{target.__name__}")
        t.start()
        return t

    threads = [run(write), run(seal)]
    try:
        while (job := _recv(stdin)) is not None:
            name, first, tmp_dir, items = job
            for path, offset, size, tenant in items:
                rows.add(_pread(path, offset, size), tenant)
            converted.put((name, first, tmp_dir, rows.finish()))
    finally:
        converted.put(None)
        for t in threads:
            t.join()
    return 0


class Converter:
    """The collector's side: starts the helper on first use, restarts it after a failure.
    Answers come in the order rounds were submitted; `generation` changes whenever a helper
    is killed, so a round knows whether its answer can still come."""

    def __init__(self, mapping: dict[str, list[str]] | None, root: Any, level: int,
                 timeout_s: float = 60.0):
        self._init = (mapping, str(root), level)
        self.timeout_s = timeout_s  # a round takes well under a second
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.generation = 0

    def submit(self, job: tuple) -> int:
        """Hand a round to the helper, starting one if needed; returns the generation its
        answer belongs to. ConvertError if it cannot."""
        with self._lock:
            try:
                if self._proc is None:
                    self._proc = subprocess.Popen(
                        [sys.executable, "-m", "aitrail.store.convert_worker"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                        start_new_session=True)
                    _send(self._proc.stdin.fileno(), self._init)
                _send(self._proc.stdin.fileno(), job)
                return self.generation
            except (OSError, ValueError, pickle.PickleError) as e:
                raise self._failed(e) from None

    def result(self, generation: int) -> Any:
        """The answer to the oldest round not answered yet, submitted in `generation`."""
        with self._lock:
            if generation != self.generation or self._proc is None:
                raise ConvertError("the conversion helper that had the round was stopped")
            try:
                out = _recv(self._proc.stdout.fileno(), self.timeout_s)
                if out is None:
                    raise ConvertError("it exited")
                return out
            except (OSError, ValueError, pickle.PickleError, EOFError, ConvertError) as e:
                raise self._failed(e) from None

    def _failed(self, e: BaseException) -> ConvertError:
        code = self._kill()
        return ConvertError(f"the conversion helper failed ({e}; exit code {code})")

    def kill(self) -> None:
        """Stop the helper now, with whatever rounds it holds (they are staged again)."""
        with self._lock:
            self._kill()

    def _kill(self) -> int | None:
        proc, self._proc = self._proc, None
        self.generation += 1
        if proc is None:
            return None
        proc.kill()
        code = proc.wait()
        for f in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                f.close()
        return code

    def close(self) -> None:
        """Stop the helper (it exits when its stdin closes)."""
        with self._lock:
            proc, self._proc = self._proc, None
            self.generation += 1
            if proc is None:
                return
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


if __name__ == "__main__":
    sys.exit(main())
