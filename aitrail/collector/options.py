"""`aitrail serve` settings, checked before anything starts. Light on imports: the
supervisor of several collector processes loads only this."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store.pipeline import Limits
    from ..store.redaction import RedactionPolicy
    from ..store.retention.policy import RetentionPolicy
    from .auth import Authenticator

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
    workers: int = 1  # collector processes sharing the ports (SO_REUSEPORT), >1: supervised
    reuse_port: bool = False  # set for each process of a supervised group
    compact_every: float | None = None  # overrides limits.compact_interval_s
    redaction: RedactionPolicy | None = None  # [redaction] of aitrail.toml; None: defaults
    retention: RetentionPolicy | None = None  # [retention]; None: keep everything


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




def check_options(opts: ServeOptions, auth: Authenticator) -> None:
    """Refuse settings that would be unsafe or cannot work, saying what to do instead."""
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
    if opts.workers < 1:
        raise ServeError("--workers must be at least 1")


def default_workers() -> int:
    """One collector process unless asked for more. One process already keeps about two
    cores busy (it serves and writes the WAL; its helper process converts and writes the
    Parquet files). benchmarks/ingest_grpc.py on 2 cores, 300k spans: 1 process (and its
    helper) a median 37.8k spans/s over 11 runs (26.1k-40.0k) at a peak RSS of 282-287 MB;
    2 processes 36-38.6k at 417-445 MB (each process loads its own gRPC and Arrow, ~95 MB
    before any span). And each process remembers only what it stored: an exporter's retry
    that arrives on a new connection may reach another process and be stored twice
    (compaction drops it)."""
    return 1


def describe_security(opts: ServeOptions, auth: Authenticator) -> list[str]:
    """The TLS and auth parts of the startup line."""
    return ["TLS" + (" (mutual)" if opts.tls_client_ca else "") if opts.tls_cert else "no TLS",
            f"{len(auth.tokens)} token(s)" if auth.enabled else "no auth: tenant 'default'"]
