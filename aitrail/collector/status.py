"""One place that turns store outcomes into OTLP status codes (opentelemetry-proto
docs/specification.md; trust.md section 4).

Retryable conditions always get a retryable code with a delay: gRPC UNAVAILABLE (or
RESOURCE_EXHAUSTED, which clients retry only when it carries RetryInfo) and HTTP 503 with
Retry-After. Bad data gets INVALID_ARGUMENT / 400, which clients must not retry.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2

from ..store.pipeline import Busy, DiskFull, Unavailable


@dataclass(frozen=True)
class Outcome:
    grpc_code: int  # google.rpc.Code value
    http_status: int
    message: str
    retry_after_s: float | None = None

    def status_proto(self) -> status_pb2.Status:
        st = status_pb2.Status(code=self.grpc_code, message=self.message)
        if self.retry_after_s is not None:
            st.details.add().Pack(self.retry_info())
        return st

    def retry_info(self) -> error_details_pb2.RetryInfo:
        secs = self.retry_after_s or 0.0
        return error_details_pb2.RetryInfo(
            retry_delay=Duration(seconds=int(secs), nanos=int((secs % 1) * 1e9)))


def bad_request(message: str) -> Outcome:
    return Outcome(code_pb2.INVALID_ARGUMENT, 400, message)


def too_large(limit: int) -> Outcome:
    return Outcome(code_pb2.RESOURCE_EXHAUSTED, 413,
                   f"request larger than {limit} bytes after decompression; send smaller "
                   "batches (OTEL_BSP_MAX_EXPORT_BATCH_SIZE)")


def unauthenticated(message: str) -> Outcome:
    return Outcome(code_pb2.UNAUTHENTICATED, 401, message)


def from_exception(exc: BaseException) -> Outcome:
    """Every failure inside the store becomes retryable: refusing data for a reason the
    client cannot fix would lose it."""
    if isinstance(exc, DiskFull):
        return Outcome(code_pb2.RESOURCE_EXHAUSTED, 503, str(exc), exc.retry_after_s)
    if isinstance(exc, Busy):
        return Outcome(code_pb2.UNAVAILABLE, 503, str(exc), exc.retry_after_s)
    if isinstance(exc, Unavailable):
        return Outcome(code_pb2.UNAVAILABLE, 503, str(exc), exc.retry_after_s)
    return Outcome(code_pb2.UNAVAILABLE, 503,
                   f"internal error ({type(exc).__name__}); the request was not stored", 5.0)
