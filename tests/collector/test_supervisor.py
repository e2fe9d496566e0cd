"""`aitrail serve --workers N`: N collector processes on one port, each its own WAL and writer
id; the port is theirs alone; a dead process is restarted; a retry after a crash that lands on
another process is still recognised as a duplicate."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from aitrail.store.pipeline import Limits, Pipeline, encode_payload
from aitrail.store.query import Store
from aitrail.store.wal import WAL

from .crash_harness import EXPORT, Server, make_request, serve_command


def _export(port: int, req: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:  # a connection of its own
        call = ch.unary_unary(
            EXPORT, request_serializer=ExportTraceServiceRequest.SerializeToString,
            response_deserializer=ExportTraceServiceResponse.FromString)
        return call(req, timeout=30)


def _children(pid: int) -> list[int]:
    """The collector processes under a supervisor (not multiprocessing's resource tracker)."""
    kids = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


def _wait_for(predicate, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling a condition, not a guess at how long something takes


def test_processes_share_the_port_and_each_writes_its_own_files(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rng = random.Random(5)
    ids = iter(range(1, 10**9))
    sent: list[str] = []
    with Server(store, "grp", tmp_path / "serve.log") as server:
        assert "writers grp-0..1 (2 processes)" in server.startup_line
        assert len(_children(server.proc.pid)) == 2
        for _ in range(40):  # 40 connections: all on one process by chance is 2 in 2^40
            req, span_ids = make_request(rng, ids)
            resp = _export(server.port, req)
            assert not resp.partial_success.rejected_spans
            sent += span_ids
        server.terminate()
        assert server.wait(60) == 0
    assert server.output[-1].rstrip() == (f"aitrail serve: stopped; {len(sent)} spans accepted, "
                                 "0 duplicates dropped, 0 rejected")
    for writer in ("grp-0", "grp-1"):
        assert (store / "_wal" / writer / "checkpoint.json").exists()
        assert list((store / "spans").glob(f"*/*/*/{writer}-f*.parquet")), writer
    with Store(store) as st:
        rows = st.sql("select span_id from spans", limit=None).rows
    assert sorted(r["span_id"] for r in rows) == sorted(sent)


def test_nobody_else_can_take_the_port(tmp_path: Path) -> None:
    with Server(tmp_path / "a", "first", tmp_path / "serve.log") as first:
        for workers in (1, 2):
            cmd = serve_command(tmp_path / "b", f"second{workers}", workers)
            cmd[cmd.index("127.0.0.1:0")] = f"127.0.0.1:{first.port}"
            second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            assert second.returncode == 2, second.stderr
            assert f"127.0.0.1:{first.port}" in second.stderr
        first.terminate()
        assert first.wait(60) == 0


def test_a_dead_process_is_restarted_and_loses_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    log = tmp_path / "serve.log"
    rng = random.Random(8)
    ids = iter(range(1, 10**9))
    acked: list[str] = []
    with Server(store, "rs", log) as server:
        for _ in range(10):
            req, span_ids = make_request(rng, ids)
            assert not _export(server.port, req).partial_success.rejected_spans
            acked += span_ids
        victim = _children(server.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)  # acknowledged spans are in its WAL, not flushed
        _wait_for(lambda: "restarting it" in log.read_text(), "the restart")
        _wait_for(lambda: len(_children(server.proc.pid)) == 2 and victim not in
                  _children(server.proc.pid), "a new process")
        for _ in range(10):
            req, span_ids = make_request(rng, ids)
            assert not _export(server.port, req).partial_success.rejected_spans
            acked += span_ids
        server.terminate()
        assert server.wait(60) == 0
    with Store(store) as st:
        rows = st.sql("select span_id from spans", limit=None).rows
    assert sorted(r["span_id"] for r in rows) == sorted(acked)


def test_a_retry_on_another_process_after_a_crash_is_a_duplicate(tmp_path: Path) -> None:
    """Process A logged a request but died before acknowledging it; the exporter retries
    on process B, which must recognise every span."""
    req, span_ids = make_request(random.Random(1), iter(range(1, 100)))
    # What A left: the request durable in its WAL, never flushed, never acknowledged.
    wal = WAL(tmp_path / "_wal" / "w-0")
    wal.open()
    wal.append(encode_payload("default", req.SerializeToString()))
    wal.close()
    b = Pipeline(tmp_path, "w-1", limits=Limits(flush_interval_s=3600, compact_interval_s=0))
    b.recover()
    assert b.seed_dedupe(["w-0", "w-1"]) == 1
    b.start()
    try:
        again = b.accept(req, "default")
        assert (again.spans, again.duplicates) == (0, len(span_ids))
    finally:
        b.stop()
