"""OTLP/gRPC receiver: TraceService/Export, LogsService/Export and the standard health
service.

The method is registered with no request deserializer, so the handler gets the raw bytes:
malformed protobuf becomes INVALID_ARGUMENT (gRPC's own deserializer would answer INTERNAL,
which the OTLP spec calls non-retryable for another reason), and the exact bytes can go to the
WAL without re-encoding.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..store.pipeline import Pipeline
from . import status
from .auth import Authenticator, AuthError

log = logging.getLogger("aitrail.collector")

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing


_CODES = {c.value[0]: c for c in grpc.StatusCode}


def _abort(context: grpc.ServicerContext, outcome: status.Outcome) -> None:
    trailing: list[tuple[str, bytes]] = [
        ("grpc-status-details-bin", outcome.status_proto().SerializeToString())]
    if outcome.retry_after_s is not None:
        # The Python SDK exporter reads this key; others read the status details above.
        trailing.append(("google.rpc.retryinfo-bin", outcome.retry_info().SerializeToString()))
    context.abort_with_status(_Status(_CODES[outcome.grpc_code], outcome.message,
                                      tuple(trailing)))


class TraceReceiver:
    def __init__(self, pipeline: Pipeline, auth: Authenticator, max_bytes: int) -> None:
        self.pipeline = pipeline
        self.auth = auth
        self.max_bytes = max_bytes

    def export(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        return self._export(raw, context, ExportTraceServiceRequest, self.pipeline.accept,
                            ExportTraceServiceResponse, "rejected_spans")

    def export_logs(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        return self._export(raw, context, ExportLogsServiceRequest,
                            self.pipeline.accept_logs, ExportLogsServiceResponse,
                            "rejected_log_records")

    def _export(self, raw: bytes, context: grpc.ServicerContext, request_type: Any,
                accept: Any, response_type: Any, rejected_field: str) -> bytes:
        outcome = None
        try:
            tenant = self.auth.tenant_for(context.invocation_metadata() or ())
        except AuthError as e:
            outcome = status.unauthenticated(str(e))
        else:
            try:
                req = request_type.FromString(raw)
            except DecodeError as e:
                outcome = status.bad_request(f"malformed {request_type.__name__}: {e}")
            else:
                try:
                    accepted = accept(req, tenant, raw)
                except Exception as e:  # every store failure maps to a retryable status
                    if not isinstance(e, status.Busy | status.Unavailable):
                        log.exception("export failed")
                    outcome = status.from_exception(e)
                else:
                    resp = response_type()
                    if accepted.rejected:
                        setattr(resp.partial_success, rejected_field, accepted.rejected)
                        resp.partial_success.error_message = accepted.message
                    return resp.SerializeToString()
        _abort(context, outcome)
        return b""  # not reached: abort raises


def build_server(receiver: TraceReceiver, address: str, max_workers: int = 16,
                 credentials: grpc.ServerCredentials | None = None, reuse_port: bool = False
                 ) -> tuple[grpc.Server, int, Any]:
    """A started-ready (not yet started) server, the bound port and its health servicer.
    `reuse_port` only for the processes of one supervised collector: otherwise a second
    collector started on the same port must fail, not share it."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otlp-grpc"),
        options=[("grpc.max_receive_message_length", receiver.max_bytes),
                 ("grpc.max_send_message_length", 16 * 1024 * 1024),
                 ("grpc.so_reuseport", int(reuse_port))],
        maximum_concurrent_rpcs=max_workers * 8,
    )
    handlers = [
        grpc.method_handlers_generic_handler(service, {
            "Export": grpc.unary_unary_rpc_method_handler(
                method, request_deserializer=None, response_serializer=None)})
        for service, method in ((TRACE_SERVICE, receiver.export),
                                (LOGS_SERVICE, receiver.export_logs))]
    server.add_generic_rpc_handlers(handlers)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", TRACE_SERVICE, LOGS_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpcio >= 1.60 raises where older versions returned 0
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address} (in use, or not a local address)")
    return server, port, health_servicer
