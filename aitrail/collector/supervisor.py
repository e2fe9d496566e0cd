"""Several collector processes behind one pair of ports: `aitrail serve --workers N`.

Span conversion is Python and the GIL serialises threads (performance.md), so each core gets
a whole collector process: its own receivers, writer id (`<writer-id>-<i>`), WAL, flusher
and Parquet files. They bind the same ports with SO_REUSEPORT and the kernel spreads
connections across them; they share nothing but the store, where file names never collide.
The same property lets collectors on several machines share one store.

Start-up is in two steps so that no acknowledged span can be stored twice after a crash:
every process first recovers its own WAL and remembers the spans in its siblings' unflushed
WAL records (an exporter may retry a logged-but-unacknowledged request on another process);
only when all have done so do they start flushing (which trims WALs) and listening.

The supervisor holds each port (bound with SO_REUSEPORT, not listening) from the start, so
nothing else can take it between the check and the children binding. It forwards SIGTERM
and SIGINT, restarts a process that dies (its WAL is replayed), and exits 0 after every
process has drained and flushed. Children die with it (PR_SET_PDEATHSIG): a killed
supervisor leaves no process writing behind it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import multiprocessing.connection
import signal
import socket
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from .auth import Authenticator
from .options import (
    ServeError,
    ServeOptions,
    check_options,
    default_writer_id,
    describe_security,
    split_address,
)

log = logging.getLogger("aitrail.supervisor")

STARTUP_TIMEOUT_S = 120.0
MAX_RESTARTS = 5  # per process, then the supervisor gives up and stops everything
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the stdin pipe watch below still works
        pass


def _reserve(address: str) -> tuple[str, socket.socket]:
    """Check that nothing listens on the address, fix port 0 to a free port, and hold it."""
    host, port = split_address(address)
    family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))  # without SO_REUSEPORT: fails if anyone else has the port
        port = probe.getsockname()[1]
    except OSError as e:
        raise ServeError(f"cannot listen on {address}: {e.strerror or e}") from None
    finally:
        probe.close()
    hold = socket.socket(family, socket.SOCK_STREAM)
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    hold.bind((host, port))
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}", hold


def child_main(opts: ServeOptions, auth: Authenticator, siblings: list[str],
               conn: multiprocessing.connection.Connection) -> None:
    """One collector process of the group (runs in a spawned interpreter)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor turns Ctrl-C into SIGTERM
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"aitrail[{opts.writer_id}]: %(levelname)s %(message)s")
    from .serve import Collector

    try:
        collector = Collector(opts, auth)
        replayed = collector.pipeline.recover()
        collector.pipeline.seed_dedupe(siblings)
        conn.send(("recovered", replayed))
        if conn.recv() != "go":
            return
        collector.start()
        conn.send(("listening", collector.grpc_port, collector.http_port))
    except Exception as e:  # reported by the supervisor, which stops the group
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    # Stop on SIGTERM, or when the supervisor is gone (the pipe closes).
    watcher = threading.Thread(target=lambda: (_wait_closed(conn), stop.set()), daemon=True)
    watcher.start()
    stop.wait()
    collector.stop()
    with contextlib.suppress(OSError):  # the supervisor is gone
        conn.send(("stopped", collector.pipeline.stats))


def _wait_closed(conn: multiprocessing.connection.Connection) -> None:
    try:
        while True:
            conn.recv()
    except (EOFError, OSError):
        return


class _Child:
    def __init__(self, ctx: Any, index: int, opts: ServeOptions, auth: Authenticator,
                 siblings: list[str]) -> None:
        self.index, self.opts, self.auth, self.siblings = index, opts, auth, siblings
        self.ctx = ctx
        self.restarts = 0
        self.stats: dict[str, int] = {}
        self.spawn()

    def spawn(self) -> None:
        self.conn, child_conn = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=child_main, name=f"aitrail-serve-{self.index}",
                                     args=(self.opts, self.auth, self.siblings, child_conn))
        self.proc.start()
        child_conn.close()

    def expect(self, kind: str, timeout_s: float = STARTUP_TIMEOUT_S) -> tuple:
        if not self.conn.poll(timeout_s):
            raise ServeError(f"collector process {self.opts.writer_id} did not answer "
                             f"within {timeout_s:g} s")
        try:
            msg = self.conn.recv()
        except EOFError:
            raise ServeError(f"collector process {self.opts.writer_id} exited "
                             f"(code {self.proc.join(5) or self.proc.exitcode}) "
                             "while starting; see its messages above") from None
        if msg[0] == "error":
            raise ServeError(f"{self.opts.writer_id}: {msg[1]}")
        if msg[0] != kind:
            raise ServeError(f"{self.opts.writer_id}: expected {kind}, got {msg[0]}")
        return msg


def run_supervised(opts: ServeOptions, auth: Authenticator) -> int:
    """Run `opts.workers` collector processes until SIGTERM/SIGINT; 0 after a clean drain."""
    logging.basicConfig(level=logging.INFO, format="aitrail: %(levelname)s %(message)s",
                        stream=sys.stderr)
    check_options(opts, auth)
    base = opts.writer_id or default_writer_id()
    writers = [f"{base}-{i}" for i in range(opts.workers)]
    holds = []
    grpc_addr = http_addr = None
    if opts.grpc_address:
        grpc_addr, h = _reserve(opts.grpc_address)
        holds.append(h)
    if opts.http_address:
        http_addr, h = _reserve(opts.http_address)
        holds.append(h)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    ctx = mp.get_context("spawn")
    children: list[_Child] = []
    try:
        for i, w in enumerate(writers):
            child_opts = replace(
                opts, writer_id=w, workers=1, reuse_port=True, grpc_address=grpc_addr,
                http_address=http_addr,
                # One compactor per group is enough: they would take turns on a lock.
                compact_every=opts.compact_every if i == 0 else 0,
                retention=opts.retention if i == 0 else None)
            children.append(_Child(ctx, i, child_opts, auth, writers))
        replayed = sum(c.expect("recovered")[1] for c in children)
        for c in children:
            c.conn.send("go")
        for c in children:
            c.expect("listening")
    except BaseException:
        for c in children:
            c.proc.kill()
        raise
    finally:
        for h in holds:
            h.close()
    print(_describe(opts, base, grpc_addr, http_addr, auth, replayed), flush=True)
    code = _supervise(children, done)
    print("aitrail serve: stopping (draining requests, flushing)", flush=True)
    for c in children:
        if c.proc.is_alive():
            c.proc.terminate()  # SIGTERM: drain, flush, report
    for c in children:
        try:
            if c.conn.poll(600):
                msg = c.conn.recv()
                if msg[0] == "stopped":
                    c.stats = msg[1]
        except (EOFError, OSError):
            code = 1
        c.proc.join()
        if c.proc.exitcode != 0:
            code = 1
    total = {k: sum(c.stats.get(k, 0) for c in children)
             for k in ("accepted_spans", "duplicate_spans", "rejected_spans")}
    print(f"aitrail serve: stopped; {total['accepted_spans']} spans accepted, "
          f"{total['duplicate_spans']} duplicates dropped, {total['rejected_spans']} rejected",
          flush=True)
    return code


def _supervise(children: list[_Child], done: threading.Event) -> int:
    """Wait for a signal; restart a process that dies (its WAL is replayed)."""
    while not done.is_set():
        multiprocessing.connection.wait([c.proc.sentinel for c in children], timeout=0.5)
        for c in children:
            if c.proc.is_alive() or done.is_set():
                continue
            if c.restarts >= MAX_RESTARTS:
                log.error("collector process %s died %d times; stopping", c.opts.writer_id,
                          c.restarts + 1)
                return 1
            c.restarts += 1
            log.error("collector process %s exited (code %s); restarting it",
                      c.opts.writer_id, c.proc.exitcode)
            time.sleep(min(2.0 ** c.restarts / 4, 10.0))  # backoff, not synchronisation
            try:
                c.spawn()
                c.expect("recovered")
                c.conn.send("go")
                c.expect("listening")
            except ServeError as e:
                log.error("%s", e)
    return 0


def _describe(opts: ServeOptions, base: str, grpc_addr: str | None, http_addr: str | None,
              auth: Authenticator, replayed: int) -> str:
    parts = [f"store {opts.store}", f"writers {base}-0..{opts.workers - 1} "
             f"({opts.workers} processes)"]
    if grpc_addr:
        parts.append(f"OTLP/gRPC on {grpc_addr}")
    if http_addr:
        parts.append(f"OTLP/HTTP on {http_addr}")
    parts += describe_security(opts, auth)
    if replayed:
        parts.append(f"replayed {replayed} WAL record(s)")
    return "aitrail serve: " + ", ".join(parts)
