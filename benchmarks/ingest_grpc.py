"""Collector benchmark: durable spans/s through OTLP/gRPC, export latency, collector RSS.

Same load as ingest_file.py (6-span AI traces, ~1.35 KB/span), but live: span start times
within one hour, as a collector receives them. Pre-serialized into requests of 512 spans,
sent with 16 calls in flight over 4 connections (several services' exporters) from this
process to a collector in other processes. Measured in the same run:

- NOOP: a gRPC server (another process) that answers every Export at once: the transport's
  ceiling on this machine.
- FLOOR: aitrail's in-process ingest of the same requests (Ingester.add + flush): conversion
  and Parquet without any network or WAL.
- AITRAIL: `aitrail serve --workers N` (default as `aitrail serve`'s): acknowledged = fsync'd in the
  WAL, so acked spans/s is the durable rate; also the time until the flushers have written
  everything to Parquet. RSS and CPU are of the collector and every process it starts (its
  workers with --workers N, its conversion helper) together.

Targets on this 2-core machine: >= 30,000 spans/s durable, collector RSS <= 300 MB.

    .venv/bin/python benchmarks/ingest_grpc.py [--spans 200000] [--inflight 16]
        [--channels 4] [--workers N] [--json]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import orjson
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_file import make_load

from aitrail.collector.options import default_workers
from aitrail.store.ingest import Ingester

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TARGET_SPANS_PER_S = 30_000
TARGET_RSS_MB = 300

NOOP_SERVER = r'''
import sys, grpc
from concurrent.futures import ThreadPoolExecutor
server = grpc.server(ThreadPoolExecutor(16),
                     options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
handler = grpc.method_handlers_generic_handler(
    "opentelemetry.proto.collector.trace.v1.TraceService",
    {"Export": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"",
                                                   request_deserializer=None,
                                                   response_serializer=None)})
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(f"OTLP/gRPC on 127.0.0.1:{port}", flush=True)
sys.stdin.read()
server.stop(0)
'''


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """Samples the RSS of a process and its descendants in the background."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, tree_rss_mb(self.pid))
            except OSError:
                return

    def stop(self) -> float:
        self._stop.set()
        self._t.join()
        return self.peak


def blast(port: int, payloads: list[bytes], inflight: int,
          channels: int = 4) -> tuple[float, list[float]]:
    """Send every payload with `inflight` calls outstanding, round robin over `channels`
    connections; returns (seconds, latencies)."""
    # A local subchannel pool per channel: gRPC otherwise shares one connection between
    # channels to the same address, and `aitrail serve --workers N` spreads connections,
    # not calls, across its processes.
    chans = [grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.use_local_subchannel_pool", 1)]) for _ in range(channels)]
    calls = [ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
             for ch in chans]
    for ch in chans:
        grpc.channel_ready_future(ch).result(timeout=30)
    turn = iter(range(10**12))
    sem = threading.Semaphore(inflight)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    remaining = [len(payloads)]

    retries = [0]

    def finished(fut: grpc.Future, t0: float, payload: bytes) -> None:
        exc = fut.exception()
        if exc is not None and exc.code() in (grpc.StatusCode.UNAVAILABLE,
                                              grpc.StatusCode.RESOURCE_EXHAUSTED):
            # Back-pressure: retry after the server's RetryInfo delay, as SDK exporters do.
            delay = 0.1
            for key, value in exc.trailing_metadata() or ():
                if key == "google.rpc.retryinfo-bin":
                    info = RetryInfo.FromString(value)
                    delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
            with lock:
                retries[0] += 1
            threading.Timer(delay, send, (payload, t0)).start()
            return
        dt = time.perf_counter() - t0
        with lock:
            if exc is not None:
                errors.append(str(exc.code()))
            latencies.append(dt)
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()
        sem.release()

    def send(payload: bytes, t0: float) -> None:
        fut = calls[next(turn) % len(calls)].future(payload, timeout=60)
        fut.add_done_callback(lambda f: finished(f, t0, payload))

    start = time.perf_counter()
    for p in payloads:
        sem.acquire()
        send(p, time.perf_counter())
    done.wait()
    elapsed = time.perf_counter() - start
    for ch in chans:
        ch.close()
    if errors:
        raise SystemExit(f"{len(errors)} exports failed, e.g. {errors[:3]}")
    if retries[0]:
        print(f"    ({retries[0]} exports were refused with back-pressure and retried)",
              file=sys.stderr)
    return elapsed, sorted(latencies)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def start_server(cmd: list[str]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"OTLP/gRPC on [\d.]+:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, int(m.group(1))


def run_noop(payloads: list[bytes], inflight: int, channels: int) -> dict:
    proc, port = start_server([sys.executable, "-c", NOOP_SERVER])
    try:
        secs, lat = blast(port, payloads, inflight, channels)
    finally:
        proc.kill()
        proc.wait()
    return {"seconds": secs, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)}


def run_floor(payloads: list[bytes]) -> dict:
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), time.process_time()
        ing = Ingester(Path(d), "bench")
        for p in payloads:
            ing.add(ExportTraceServiceRequest.FromString(p))
        ing.flush()
        return {"seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def tree_pids(pid: int) -> list[int]:
    """A process and its descendants (the supervisor and its collector processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        # Every thread's children: the collector starts its conversion helper from the
        # flusher thread, and the main thread's list alone misses it.
        try:
            kids = [k for t in Path(f"/proc/{p}/task").iterdir()
                    for k in (t / "children").read_text().split()]
        except OSError:
            continue
        out.append(p)
        todo += [int(k) for k in kids]
    return out


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its descendants."""
    total = 0.0
    for p in tree_pids(pid):
        try:
            total += rss_mb(p)
        except OSError:
            continue
    return total


def run_aitrail(payloads: list[bytes], inflight: int, n_spans: int, channels: int,
                workers: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "aitrail.cli", "--store", d, "serve", "--grpc",
               "127.0.0.1:0", "--http", "off", "--writer-id", "bench",
               "--workers", str(workers), "--compact-every", "0"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc, port = start_server(cmd)
        peak = Peak(proc.pid)
        try:
            secs, lat = blast(port, payloads, inflight, channels)
            t_acked = time.perf_counter()
            proc.send_signal(signal.SIGTERM)  # drain and flush everything
            out, _ = proc.communicate(timeout=300)
            flushed_secs = secs + (time.perf_counter() - t_acked)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            rss = peak.stop()
        # CPU of the collector and every process it started and reaped (its workers, its
        # conversion helper): sampling /proc missed processes that had already exited.
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)
        m = re.search(r"stopped; (\d+) spans accepted", out)
        accepted = int(m.group(1)) if m else -1
        if accepted != n_spans:
            raise SystemExit(f"collector accepted {accepted} spans, expected {n_spans}")
        disk = sum(p.stat().st_size for p in Path(d, "spans").rglob("*.parquet"))
    return {"seconds": secs, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
            "seconds_until_flushed": flushed_secs, "peak_rss_mb": rss, "cpu_s": cpu,
            "disk_bytes_per_span": disk / n_spans}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--channels", type=int, default=4, help="client connections")
    ap.add_argument("--workers", type=int, default=default_workers(),
                    help="aitrail serve --workers")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    payloads = make_load(args.spans, args.seed, span_ns=3600 * 10**9)
    n = sum(len(ss.spans) for p in payloads[:1]
            for rs in ExportTraceServiceRequest.FromString(p).resource_spans
            for ss in rs.scope_spans)
    n_spans = sum(sum(len(ss.spans) for rs in ExportTraceServiceRequest.FromString(p)
                      .resource_spans for ss in rs.scope_spans) for p in payloads)
    log(f"load: {n_spans:,} spans in {len(payloads)} requests of ~{n} spans, "
        f"{sum(map(len, payloads)) / n_spans:,.0f} B/span; {args.inflight} in flight over "
        f"{args.channels} connections; {args.workers} collector processes; "
        f"{os.cpu_count()} cores")
    noop = run_noop(payloads, args.inflight, args.channels)
    log(f"  noop sink     {n_spans / noop['seconds']:>10,.0f} spans/s")
    floor = run_floor(payloads)
    log(f"  floor         {n_spans / floor['seconds']:>10,.0f} spans/s (in-process ingest)")
    ait = run_aitrail(payloads, args.inflight, n_spans, args.channels, args.workers)
    rate = n_spans / ait["seconds"]
    log(f"  aitrail       {rate:>10,.0f} spans/s acknowledged (durable)")
    summary = {
        "spans": n_spans, "inflight": args.inflight,
        "noop_spans_per_s": n_spans / noop["seconds"], "noop_p50_ms": noop["p50_ms"],
        "floor_spans_per_s": n_spans / floor["seconds"],
        "aitrail_durable_spans_per_s": rate,
        "aitrail_flushed_spans_per_s": n_spans / ait["seconds_until_flushed"],
        "aitrail_p50_ms": ait["p50_ms"], "aitrail_p99_ms": ait["p99_ms"],
        "aitrail_peak_rss_mb": ait["peak_rss_mb"],
        "aitrail_cpu_us_per_span": 1e6 * sum(ait["cpu_s"]) / n_spans,
        "aitrail_system_cpu_us_per_span": 1e6 * ait["cpu_s"][1] / n_spans,
        "floor_cpu_us_per_span": 1e6 * floor["cpu_s"] / n_spans,
        "aitrail_disk_bytes_per_span": ait["disk_bytes_per_span"],
        "pass": {"spans_per_s": rate >= TARGET_SPANS_PER_S,
                 "rss": ait["peak_rss_mb"] <= TARGET_RSS_MB},
    }
    if args.json:
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    else:
        mark = {True: "PASS", False: "MISS"}
        print()
        vs_noop = rate / summary["noop_spans_per_s"]
        print(f"durable (acked)      {rate:>10,.0f} spans/s   {vs_noop:.2f}"
              f"x noop, {rate / summary['floor_spans_per_s']:.2f}x in-process floor   "
              f"target >= {TARGET_SPANS_PER_S:,}   {mark[summary['pass']['spans_per_s']]}")
        print(f"flushed to Parquet   {summary['aitrail_flushed_spans_per_s']:>10,.0f} spans/s")
        print(f"export latency       p50 {ait['p50_ms']:.1f} ms, p99 {ait['p99_ms']:.1f} ms "
              f"(noop p50 {noop['p50_ms']:.1f} ms)")
        print(f"collector peak RSS   {ait['peak_rss_mb']:>10.0f} MB   target <= {TARGET_RSS_MB}"
              f"   {mark[summary['pass']['rss']]}")
        print(f"on disk              {ait['disk_bytes_per_span']:>10.0f} B/span")
        print(f"collector CPU        {summary['aitrail_cpu_us_per_span']:>10.1f} us/span   "
              f"({summary['aitrail_system_cpu_us_per_span']:.1f} in the kernel; "
              f"in-process floor {summary['floor_cpu_us_per_span']:.1f} us/span; "
              f"{os.cpu_count()} cores give {os.cpu_count() * 1e6 / TARGET_SPANS_PER_S:.0f} "
              f"us per span at the target)")
    return 0 if all(summary["pass"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
