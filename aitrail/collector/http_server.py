"""OTLP/HTTP receiver: POST /v1/traces and /v1/logs with protobuf or JSON bodies, optionally
gzip'd.

The body limit applies after decompression and is enforced while inflating, so a gzip bomb
costs at most `max_bytes` of memory (OTLP spec: limit the request "including after
decompression"; answer 413, which clients must not retry). Error bodies are google.rpc.Status
in the request's encoding, as the spec asks.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..store.errors import BadInput
from ..store.otlp_decode import logs_request_from_json, request_from_json
from ..store.pipeline import Busy, Pipeline, Unavailable
from . import status
from .auth import Authenticator, AuthError

log = logging.getLogger("aitrail.collector")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


# path -> (request type, JSON decoder, response type, partial-success field, pipeline method)
ROUTES = {
    "/v1/traces": (ExportTraceServiceRequest, request_from_json, ExportTraceServiceResponse,
                   "rejected_spans", "accept"),
    "/v1/logs": (ExportLogsServiceRequest, logs_request_from_json, ExportLogsServiceResponse,
                 "rejected_log_records", "accept_logs"),
}


class TooLarge(Exception):
    pass


def inflate(body: bytes, limit: int) -> bytes:
    """gunzip with a hard output limit. A gzip stream may hold several members (RFC 1952
    2.2); all are decoded, since acknowledging only the first would drop spans silently."""
    out = bytearray()
    rest = body
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += d.decompress(rest, limit + 1 - len(out))  # >= 1: 0 would mean no limit
        except zlib.error as e:
            raise BadInput(f"broken gzip body: {e}") from None
        if len(out) > limit or d.unconsumed_tail:
            raise TooLarge
        if not d.eof:
            raise BadInput("truncated gzip body")
        rest = d.unused_data
    return bytes(out)


class _Handler(BaseHTTPRequestHandler):
    server: OTLPHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "aitrail"
    timeout = 60  # seconds of silence before a slow or stuck client is dropped

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s - %s", self.address_string(), format % args)

    def _send(self, code: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _fail(self, outcome: status.Outcome, content_type: str) -> None:
        st = outcome.status_proto()
        body = (orjson.dumps(json_format.MessageToDict(st)) if content_type == JSON
                else st.SerializeToString())
        headers = {}
        if outcome.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(outcome.retry_after_s)))
        if outcome.http_status in (411, 413):
            # These may be sent without reading the body: on a keep-alive connection it would
            # be parsed as the next request, so the connection ends with this reply.
            headers["Connection"] = "close"
            self.close_connection = True
        self._send(outcome.http_status, body, content_type, headers)

    def do_GET(self) -> None:
        if self.path in ("/health", "/healthz"):
            ok = self.server.pipeline.wal.failed is None and self.server.serving
            self._send(200 if ok else 503, orjson.dumps({"status": "ok" if ok else "down"}),
                       JSON)
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:
        try:
            self._post()
        except Exception as e:  # never let a handler die without an answer
            log.exception("http handler failed")
            with contextlib.suppress(OSError):
                self._fail(status.from_exception(e), PROTOBUF)

    def _post(self) -> None:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        reply_as = JSON if ctype == JSON else PROTOBUF
        limit = self.server.max_bytes
        # The body is read before any other check, so that a refusal leaves the keep-alive
        # connection at the start of the next request.
        try:
            length = int(self.headers.get("Content-Length") or "")
            if length < 0:  # rfile.read(-1) would read to end of stream, past the limit
                raise ValueError
        except ValueError:
            self._fail(status.Outcome(3, 411, "Content-Length required"), reply_as)
            return
        if length > limit:
            self._fail(status.too_large(limit), reply_as)
            return
        body = self.rfile.read(length)
        route = ROUTES.get(self.path.rstrip("/"))
        if route is None:
            self._send(404, b"only POST /v1/traces and /v1/logs are served here\n",
                       "text/plain")
            return
        request_type, from_json, response_type, rejected_field, accept_name = route
        if ctype not in (PROTOBUF, JSON):
            self._fail(status.Outcome(3, 415, f"unsupported Content-Type {ctype!r}; use "
                                      f"{PROTOBUF} or {JSON}"), PROTOBUF)
            return
        try:
            tenant = self.server.auth.tenant_for(self.headers.items())
        except AuthError as e:
            self._fail(status.unauthenticated(str(e)), ctype)
            return
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = inflate(body, limit)
            elif encoding not in ("identity", ""):
                raise BadInput(f"unsupported Content-Encoding {encoding!r}; use gzip")
            if ctype == PROTOBUF:
                try:
                    req = request_type.FromString(body)
                except Exception as e:
                    raise BadInput(f"malformed {request_type.__name__}: {e}") from None
            else:
                req = from_json(body)
        except TooLarge:
            self._fail(status.too_large(limit), ctype)
            return
        except BadInput as e:
            self._fail(status.bad_request(str(e)), ctype)
            return
        try:
            accepted = getattr(self.server.pipeline, accept_name)(
                req, tenant, body if ctype == PROTOBUF else None)
        except Exception as e:
            if not isinstance(e, Busy | Unavailable):
                log.exception("export failed")
            self._fail(status.from_exception(e), ctype)
            return
        resp = response_type()
        if accepted.rejected:
            setattr(resp.partial_success, rejected_field, accepted.rejected)
            resp.partial_success.error_message = accepted.message
        out = (orjson.dumps(json_format.MessageToDict(resp)) if ctype == JSON
               else resp.SerializeToString())
        self._send(200, out, ctype)


class OTLPHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], pipeline: Pipeline, auth: Authenticator,
                 max_bytes: int, tls: ssl.SSLContext | None = None,
                 reuse_port: bool = False) -> None:
        self.allow_reuse_port = reuse_port  # read by server_bind, in the constructor below
        super().__init__(address, _Handler)
        self.pipeline = pipeline
        self.auth = auth
        self.max_bytes = max_bytes
        self.serving = True
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,),
                                        name="otlp-http",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.serving = False
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()


