"""`aitrail send`: OTLP files -> any OTLP/gRPC endpoint (ours or another backend).

Retries what the OTLP spec calls retryable (UNAVAILABLE, RESOURCE_EXHAUSTED with RetryInfo,
...), honouring RetryInfo, with capped exponential backoff; anything else is reported with
its file and line and the rest is still sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..store.errors import BadInput
from ..store.otlp_decode import decode_payload, read_file

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RETRYABLE = {grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE,
             grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS}


@dataclass
class SendReport:
    requests: int = 0
    spans: int = 0
    rejected_spans: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.rejected_spans


def parse_headers(pairs: Iterable[str]) -> list[tuple[str, str]]:
    """'k=v' items, or one OTEL_EXPORTER_OTLP_HEADERS string 'k=v,k2=v2' (values may be
    percent-encoded, as that variable allows)."""
    from urllib.parse import unquote

    out = []
    for item in pairs:
        for part in item.split(","):
            if not part.strip():
                continue
            k, sep, v = part.partition("=")
            if not sep:
                raise ValueError(f"header {part!r} must be key=value")
            out.append((k.strip().lower(), unquote(v.strip())))
    return out


def _retry_delay(err: grpc.RpcError) -> float | None:
    for key, value in err.trailing_metadata() or ():
        if key == "google.rpc.retryinfo-bin":
            info = error_details_pb2.RetryInfo.FromString(value)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
        if key == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(value)
            for detail in st.details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


class Sender:
    def __init__(self, endpoint: str, headers: list[tuple[str, str]] | None = None,
                 tls_ca: Path | None = None, use_tls: bool = False, gzip: bool = False,
                 timeout_s: float = 10.0, max_attempts: int = 6) -> None:
        if tls_ca is not None or use_tls:
            creds = grpc.ssl_channel_credentials(tls_ca.read_bytes() if tls_ca else None)
            self.channel = grpc.secure_channel(endpoint, creds)
        else:
            self.channel = grpc.insecure_channel(endpoint)
        self.call = self.channel.unary_unary(
            EXPORT, request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString)
        self.metadata = headers or []
        self.compression = grpc.Compression.Gzip if gzip else None
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.endpoint = endpoint

    def send(self, req: ExportTraceServiceRequest, where: str, report: SendReport) -> None:
        data = req.SerializeToString()
        spans = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        delay = 0.5
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = self.call(data, timeout=self.timeout_s, metadata=self.metadata,
                                 compression=self.compression)
            except grpc.RpcError as e:
                code = e.code()
                hinted = _retry_delay(e)
                retryable = code in RETRYABLE or (
                    code == grpc.StatusCode.RESOURCE_EXHAUSTED and hinted is not None)
                if not retryable or attempt == self.max_attempts:
                    report.errors.append(f"{where}: {code.name}: {e.details()}"
                                         + (f" (after {attempt} attempts)" if attempt > 1
                                            else ""))
                    return
                time.sleep(min(hinted if hinted is not None else delay, 30.0))
                delay = min(delay * 2, 30.0)
                continue
            report.requests += 1
            ps = resp.partial_success
            report.rejected_spans += ps.rejected_spans
            report.spans += spans - ps.rejected_spans
            if ps.error_message:
                (report.errors if ps.rejected_spans else report.warnings).append(
                    f"{where}: {ps.error_message}")
            return

    def send_files(self, paths: Iterable[Path],
                   progress: Callable[[int, int, str], None] | None = None) -> SendReport:
        report = SendReport()
        paths = list(paths)
        for i, path in enumerate(paths, start=1):
            if progress:
                progress(i, len(paths), str(path))
            for payload in read_file(path):
                if payload.error is not None:
                    report.errors.append(f"{payload.where}: {payload.error}")
                    continue
                try:
                    reqs = decode_payload(payload.kind, payload.data)
                except BadInput as e:
                    report.errors.append(f"{payload.where}: {e}")
                    continue
                for req in reqs:
                    self.send(req, payload.where, report)
        return report

    def close(self) -> None:
        self.channel.close()
