"""Span conversion in a helper process, for the collector's flusher.

One collector process holds one GIL, and converting spans (the compiled converter plus the
normalizer, Python) was about a third of the GIL time in it (py-spy --gil): the gRPC
threads, the WAL and the writer waited for it. The flusher hands each round's WAL records to
this helper, which reads them from the WAL files itself and answers with the generic and audit
columns as Arrow buffers (records.SpanRows, the same code as in-process); the collector
builds the table and writes it. So conversion runs on the other core, in a process that
imports no gRPC and holds no requests.

The helper keeps nothing: if it dies, the round is converted again (by a new helper, or in
the collector itself when none can start), from the WAL, which is trimmed only after the
round's files are published. It exits when its stdin closes, so it never outlives the
collector. Requests the compiled converter does not take are named in the answer and
converted by the collector with the reference code.

Protocol on stdin/stdout: frames of a little-endian u64 length and a pickle. First frame: the
mapping ([mapping] of aitrail.toml) and the audit column kinds; then one frame per round, a
list of (WAL segment path, offset, size, tenant), answered by (columns, tenants, hours,
rejected, refused request indices).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any


class ConvertError(Exception):
    """The helper failed, is gone or too slow: convert the round again."""


_LEN = struct.Struct("<Q")
# An answer is a few MB. Each read from the pipe gives up the GIL and must take it back from
# the gRPC threads, so a 1 MiB pipe (not the default 64 KiB) means 16x fewer waits for it.
_F_SETPIPE_SZ = 1031
# A round is ~2 MiB of requests; its answer a few MB. Anything far larger is a broken peer.
_MAX_FRAME = 1 << 31


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
    """The helper: convert rounds until stdin closes."""
    # The collector decides when to stop; Ctrl-C reaches the whole process group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import orjson

    from . import _spanrows
    from .normalize import Normalizer

    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    init = _recv(stdin)
    if init is None:
        return 0
    mapping, audit = init
    builder = _spanrows.Builder(Normalizer(mapping).normalize, orjson.dumps, audit)
    while (items := _recv(stdin)) is not None:
        refused = [i for i, (path, offset, size, tenant) in enumerate(items)
                   if not builder.add(_pread(path, offset, size), tenant)]
        _send(stdout, (*builder.finish(), refused))
    return 0


class Converter:
    """The collector's side: starts the helper on first use, restarts it after a failure."""

    def __init__(self, mapping: dict[str, list[str]] | None, audit: list[tuple[str, str]],
                 timeout_s: float = 60.0):
        self._init = (mapping, audit)
        self.timeout_s = timeout_s  # a round takes well under a second
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def convert(self, items: list[tuple[str, int, int, str]]) -> tuple:
        """(columns, tenants, hours, rejected, refused) of one round."""
        with self._lock:
            try:
                if self._proc is None:
                    self._proc = subprocess.Popen(
                        [sys.executable, "-m", "aitrail.store.convert_worker"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                        start_new_session=True)
                    with contextlib.suppress(OSError):  # fewer, larger reads (Linux)
                        fcntl.fcntl(self._proc.stdout.fileno(), _F_SETPIPE_SZ, 1 << 20)
                    _send(self._proc.stdin.fileno(), self._init)
                _send(self._proc.stdin.fileno(), items)
                out = _recv(self._proc.stdout.fileno(), self.timeout_s)
                if out is None:
                    raise ConvertError("it exited")
                return out
            except (OSError, ValueError, pickle.PickleError, EOFError, ConvertError) as e:
                code = self._kill()
                raise ConvertError(f"the conversion helper failed ({e}; exit code {code})"
                                   ) from None

    def _kill(self) -> int | None:
        proc, self._proc = self._proc, None
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
