"""What the protocol tests put on the wire: hand-built OTLP requests, raw gRPC and HTTP calls
to a running collector, and what its store holds afterwards."""

from __future__ import annotations

import http.client
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aitrail.collector.grpc_server import LOGS_SERVICE, TRACE_SERVICE
from aitrail.collector.serve import Collector
from aitrail.store.query import Store

EXPORT = f"/{TRACE_SERVICE}/Export"
EXPORT_LOGS = f"/{LOGS_SERVICE}/Export"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def new_span(name: str = "op", *, trace_id: bytes | None = None) -> Span:
    sp = Span(trace_id=os.urandom(16) if trace_id is None else trace_id,
              span_id=os.urandom(8), name=name, kind=Span.SPAN_KIND_INTERNAL,
              start_time_unix_nano=1_700_000_000_000_000_000,
              end_time_unix_nano=1_700_000_000_500_000_000)
    sp.attributes.append(KeyValue(key="gen_ai.operation.name"))
    sp.attributes[0].value.string_value = "chat"
    return sp


def bad_span(name: str = "bad") -> Span:
    """A span every OTLP receiver must refuse: its trace id is 15 bytes, not 16."""
    return new_span(name, trace_id=os.urandom(15))


def new_request(spans: Iterable[Span], resource: dict[str, str] | None = None
                ) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, value in {"service.name": "svc", **(resource or {})}.items():
        kv = rs.resource.attributes.add(key=key)
        kv.value.string_value = value
    ss = rs.scope_spans.add()
    ss.scope.name = "tests.collector"
    ss.spans.extend(spans)
    return req


def good_request(n: int = 2, resource: dict[str, str] | None = None
                 ) -> tuple[ExportTraceServiceRequest, set[str]]:
    """A valid request of n spans and their span ids (hex, as the store shows them)."""
    spans = [new_span(f"op-{i}") for i in range(n)]
    return new_request(spans, resource), {sp.span_id.hex() for sp in spans}


def sdk_spans(n: int, resource: dict[str, str] | None = None,
              attrs: dict[str, str] | None = None) -> tuple[list[ReadableSpan], set[str]]:
    """n finished OpenTelemetry SDK spans (never exported by a processor) and their span ids."""
    mem = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc",
                                                        **(resource or {})}))
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("tests.collector")
    for i in range(n):
        with tracer.start_as_current_span(f"chat {i}") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", **(attrs or {})})
    provider.shutdown()
    spans = list(mem.get_finished_spans())
    return spans, {f"{sp.context.span_id:016x}" for sp in spans}


# -- gRPC --------------------------------------------------------------------------------------

@dataclass
class GrpcReply:
    code: grpc.StatusCode
    details: str | None
    body: bytes | None
    trailing: dict[str, Any]

    def status_details(self) -> status_pb2.Status:
        return status_pb2.Status.FromString(self.trailing["grpc-status-details-bin"])

    def retry_info(self) -> error_details_pb2.RetryInfo | None:
        raw = self.trailing.get("google.rpc.retryinfo-bin")
        return None if raw is None else error_details_pb2.RetryInfo.FromString(raw)


def grpc_export(to: int | grpc.Channel, body: bytes,
                metadata: Iterable[tuple[str, str]] = (),
                compression: grpc.Compression | None = None,
                method: str = EXPORT) -> GrpcReply:
    """One raw TraceService/Export call (or `method`: EXPORT_LOGS), the bytes going out
    exactly as given, over a channel or a new one to a loopback port."""
    if isinstance(to, int):
        with grpc.insecure_channel(f"127.0.0.1:{to}") as ch:
            return grpc_export(ch, body, metadata, compression, method)
    call = to.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        resp, info = call.with_call(body, metadata=tuple(metadata), timeout=10,
                                    compression=compression)
    except grpc.RpcError as e:
        return GrpcReply(e.code(), e.details(), None, dict(e.trailing_metadata() or ()))
    return GrpcReply(info.code(), info.details(), resp, dict(info.trailing_metadata() or ()))


# -- HTTP --------------------------------------------------------------------------------------

@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def http_post(to: int | http.client.HTTPConnection, body: bytes,
              content_type: str | None = PROTOBUF, headers: dict[str, str] | None = None,
              path: str = "/v1/traces") -> HttpReply:
    """One POST over a (keep-alive) connection, or a new one to a loopback port."""
    if isinstance(to, int):
        conn = http.client.HTTPConnection("127.0.0.1", to, timeout=10)
        try:
            return http_post(conn, body, content_type, headers, path)
        finally:
            conn.close()
    conn = to
    hdrs = dict(headers or {})
    if content_type is not None:
        hdrs["Content-Type"] = content_type
    conn.request("POST", path, body=body, headers=hdrs)
    resp = conn.getresponse()
    return HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())


def http_get(port: int, path: str) -> HttpReply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return HttpReply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


# -- the store ---------------------------------------------------------------------------------

def stored_spans(collector: Collector) -> dict[str, str]:
    """span id (hex) -> tenant, for every span in the store after a flush."""
    collector.pipeline.flush()
    with Store(collector.opts.store) as st:
        rows = st.sql("select span_id, tenant from spans", limit=None).rows
    return {r["span_id"]: r["tenant"] for r in rows}


def count_calls(monkeypatch: Any, owner: Any, name: str,
                before: Callable[[int], None] | None = None) -> list[int]:
    """Wrap owner.name so every call is counted; `before(n)` runs first with the call's number
    (1-based) and may raise to make that call fail. Returns the one-element counter."""
    real = getattr(owner, name)
    calls = [0]

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if before is not None:
            before(calls[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls
