"""`aitrail serve`: wire the store pipeline to the OTLP receivers, run until a signal."""

from __future__ import annotations

import logging
import os
import signal
import ssl
import sys
import threading
from dataclasses import replace

import grpc
from grpc_health.v1 import health_pb2

from ..store.memory import lean_allocators
from ..store.pipeline import Limits, Pipeline
from ..store.retention.apply import RetentionRunner
from .auth import Authenticator
from .grpc_server import LOGS_SERVICE, TRACE_SERVICE, TraceReceiver, build_server
from .http_server import OTLPHTTPServer
from .options import (
    ServeOptions,
    check_options,
    default_writer_id,
    describe_security,
    split_address,
)

log = logging.getLogger("aitrail.collector")


class Collector:
    """The running receivers and pipeline; `stop()` drains and flushes."""

    def __init__(self, opts: ServeOptions, auth: Authenticator,
                 convert_in_helper: bool = False) -> None:
        self.opts = opts
        self.auth = auth
        check_options(opts, auth)
        lean_allocators()
        limits = opts.limits or Limits()
        if opts.compact_every is not None:
            limits = replace(limits, compact_interval_s=opts.compact_every)
        if convert_in_helper:
            limits = replace(limits, convert_in_helper=True)
        self.pipeline = Pipeline(opts.store, opts.writer_id or default_writer_id(),
                                 opts.mapping, limits, opts.redaction)
        self.retention = RetentionRunner(opts.store, opts.retention)
        self.grpc_server: grpc.Server | None = None
        self.http_server: OTLPHTTPServer | None = None
        self.health = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self.replayed = 0

    def _grpc_credentials(self) -> grpc.ServerCredentials | None:
        o = self.opts
        if not o.tls_cert:
            return None
        root = o.tls_client_ca.read_bytes() if o.tls_client_ca else None
        return grpc.ssl_server_credentials(
            [(o.tls_key.read_bytes(), o.tls_cert.read_bytes())], root_certificates=root,
            require_client_auth=root is not None)

    def _http_tls(self) -> ssl.SSLContext | None:
        o = self.opts
        if not o.tls_cert:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(o.tls_cert, o.tls_key)
        if o.tls_client_ca:
            ctx.load_verify_locations(o.tls_client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def start(self) -> None:
        self.replayed = self.pipeline.start()
        self.retention.start()
        try:
            if self.opts.grpc_address:
                receiver = TraceReceiver(self.pipeline, self.auth, self.opts.max_request_bytes)
                self.grpc_server, self.grpc_port, self.health = build_server(
                    receiver, self.opts.grpc_address, credentials=self._grpc_credentials(),
                    reuse_port=self.opts.reuse_port)
                self.grpc_server.start()
            if self.opts.http_address:
                host, port = split_address(self.opts.http_address)
                self.http_server = OTLPHTTPServer((host, port), self.pipeline, self.auth,
                                                  self.opts.max_request_bytes, self._http_tls(),
                                                  reuse_port=self.opts.reuse_port)
                self.http_port = self.http_server.port
                self.http_server.start()
        except BaseException:
            self.stop()
            raise

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish, flush, close the WAL."""
        if self.health is not None:
            for name in ("", TRACE_SERVICE, LOGS_SERVICE):
                self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.http_server is not None:
            self.http_server.stop()
            self.http_server = None
        if self.grpc_server is not None:
            self.grpc_server.stop(grace_s).wait()
            self.grpc_server = None
        self.retention.stop()
        self.pipeline.stop()

    def describe(self) -> str:
        parts = [f"store {self.opts.store}", f"writer {self.pipeline.writer_id}"]
        if self.grpc_port:
            host, _ = split_address(self.opts.grpc_address or "")
            parts.append(f"OTLP/gRPC on {host}:{self.grpc_port}")
        if self.http_port:
            host, _ = split_address(self.opts.http_address or "")
            parts.append(f"OTLP/HTTP on {host}:{self.http_port}")
        parts += describe_security(self.opts, self.auth)
        if self.replayed:
            parts.append(f"replayed {self.replayed} WAL record(s)")
        return "aitrail serve: " + ", ".join(parts)


def run(opts: ServeOptions, auth: Authenticator) -> int:
    """Serve until SIGTERM or SIGINT; exit code 0 after a clean drain."""
    logging.basicConfig(level=logging.INFO, format="aitrail: %(levelname)s %(message)s",
                        stream=sys.stderr)
    # One process: span conversion goes to a helper process on another core (with
    # --workers N, each process has a core of its own instead). benchmarks/ingest_grpc.py,
    # 2 cores: 18.1-18.8k -> 25.0-26.8k spans/s, peak RSS 214-219 -> 270 MB.
    collector = Collector(opts, auth, convert_in_helper=(os.cpu_count() or 1) > 1)
    collector.start()
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        done.set()

    # Before the startup line: a supervisor may send SIGTERM as soon as it reads it, and
    # the default action would kill the process without draining or flushing.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    print(collector.describe(), flush=True)
    while not done.wait(1.0):
        pass
    print("aitrail serve: stopping (draining requests, flushing)", flush=True)
    collector.stop()
    s = collector.pipeline.stats
    print(f"aitrail serve: stopped; {s['accepted_spans']} spans accepted, "
          f"{s['duplicate_spans']} duplicates dropped, {s['rejected_spans']} rejected",
          flush=True)
    return 0
