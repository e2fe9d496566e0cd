"""`aitrail serve`: wire the store pipeline to the OTLP receivers, run until a signal."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from ..store.pipeline import Limits, Pipeline
from .auth import Authenticator
from .grpc_server import LOGS_SERVICE, TRACE_SERVICE, TraceReceiver, build_server
from .http_server import OTLPHTTPServer

log = logging.getLogger("aitrail.collector")

DEFAULT_GRPC = "127.0.0.1:4317"
DEFAULT_HTTP = "127.0.0.1:4318"
DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # OTLP spec's recommended default, after decompression


@dataclass
class ServeOptions:
    store: Path
    grpc_address: str | None = DEFAULT_GRPC
    http_address: str | None = DEFAULT_HTTP
    writer_id: str | None = None
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    max_request_bytes: int = DEFAULT_MAX_BYTES
    mapping: dict[str, list[str]] | None = None
    limits: Limits | None = None
    workers: int = 1  # processes that convert spans for the flusher


class ServeError(Exception):
    """A setting that stops the server from starting, with what to do instead."""


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ServeError(f"address {address!r} must be HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_writer_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"c-{host[:40] or 'local'}"


class Collector:
    """The running receivers and pipeline; `stop()` drains and flushes."""

    def __init__(self, opts: ServeOptions, auth: Authenticator) -> None:
        self.opts = opts
        self.auth = auth
        for addr in (opts.grpc_address, opts.http_address):
            if addr and not auth.enabled and not opts.insecure:
                host, _ = split_address(addr)
                if not is_loopback(host):
                    raise ServeError(
                        f"refusing to listen on {addr} without authentication: add tokens to "
                        "[auth] in aitrail.toml (see `aitrail token new`), or pass --insecure "
                        "to accept unauthenticated data from the network")
        if bool(opts.tls_cert) != bool(opts.tls_key):
            raise ServeError("--tls-cert and --tls-key go together")
        if opts.tls_client_ca and not opts.tls_cert:
            raise ServeError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        self.pipeline = Pipeline(opts.store, opts.writer_id or default_writer_id(),
                                 opts.mapping, opts.limits, jobs=opts.workers)
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
        try:
            if self.opts.grpc_address:
                receiver = TraceReceiver(self.pipeline, self.auth, self.opts.max_request_bytes)
                self.grpc_server, self.grpc_port, self.health = build_server(
                    receiver, self.opts.grpc_address, credentials=self._grpc_credentials())
                self.grpc_server.start()
            if self.opts.http_address:
                host, port = split_address(self.opts.http_address)
                self.http_server = OTLPHTTPServer((host, port), self.pipeline, self.auth,
                                                  self.opts.max_request_bytes, self._http_tls())
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
        self.pipeline.stop()

    def describe(self) -> str:
        parts = [f"store {self.opts.store}", f"writer {self.pipeline.writer_id}"]
        if self.opts.workers > 1:
            parts.append(f"{self.opts.workers} flush workers")
        if self.grpc_port:
            host, _ = split_address(self.opts.grpc_address or "")
            parts.append(f"OTLP/gRPC on {host}:{self.grpc_port}")
        if self.http_port:
            host, _ = split_address(self.opts.http_address or "")
            parts.append(f"OTLP/HTTP on {host}:{self.http_port}")
        parts.append("TLS" + (" (mutual)" if self.opts.tls_client_ca else "")
                     if self.opts.tls_cert else "no TLS")
        parts.append(f"{len(self.auth.tokens)} token(s)" if self.auth.enabled
                     else "no auth: tenant 'default'")
        if self.replayed:
            parts.append(f"replayed {self.replayed} WAL record(s)")
        return "aitrail serve: " + ", ".join(parts)


def run(opts: ServeOptions, auth: Authenticator) -> int:
    """Serve until SIGTERM or SIGINT; exit code 0 after a clean drain."""
    logging.basicConfig(level=logging.INFO, format="aitrail: %(levelname)s %(message)s",
                        stream=sys.stderr)
    collector = Collector(opts, auth)
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
