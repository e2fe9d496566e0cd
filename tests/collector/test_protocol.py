"""OTLP conformance through the network (trust.md G5): malformed input, partial success, size
limits and health, against a real collector on loopback."""

from __future__ import annotations

import gzip
import http.client
import re
import time
import zlib
from pathlib import Path

import grpc
import orjson
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from aitrail.store.otlp_decode import request_to_json

from .conftest import start_collector
from .wire import (
    JSON,
    PROTOBUF,
    bad_span,
    good_request,
    grpc_export,
    http_get,
    http_post,
    new_request,
    new_span,
    stored_spans,
)

GARBAGE = b"\xff" * 11 + b"\x0f\x00garbage"  # an over-long varint tag: not a protobuf


# -- malformed requests ------------------------------------------------------------------------

def test_grpc_garbage_is_invalid_argument_and_the_server_keeps_serving(collector):
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as ch:
        bad = grpc_export(ch, GARBAGE)
        req, ids = good_request(2)
        good = grpc_export(ch, req.SerializeToString())
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed ExportTraceServiceRequest" in bad.details
    assert bad.status_details().code == code_pb2.INVALID_ARGUMENT
    assert bad.retry_info() is None  # not retryable, so no delay to honour
    assert good.code == grpc.StatusCode.OK
    assert ExportTraceServiceResponse.FromString(good.body) == ExportTraceServiceResponse()
    assert ids <= stored_spans(collector).keys()


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    (GARBAGE, PROTOBUF, 400, "malformed ExportTraceServiceRequest"),
    (b'{"resourceSpans": [', JSON, 400, "malformed JSON"),
    (b'{"resourceLogs": []}', JSON, 400, "not traces"),
    (b'{"resourceSpans": "not a list"}', JSON, 400, ""),
    (b'{"resourceSpans": [{"scopeSpans": [7]}]}', JSON, 400, ""),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', JSON, 400,
     "not hex"),
    (b"resourceSpans=1", "application/x-www-form-urlencoded", 415, "unsupported Content-Type"),
    (b"", None, 415, "unsupported Content-Type"),
], ids=["garbage-protobuf", "truncated-json", "logs-not-traces", "spans-not-a-list",
        "scope-spans-not-objects", "non-hex-id", "form-content-type", "no-content-type"])
def test_http_bad_request_gets_a_status_body_and_the_connection_keeps_serving(
        collector, body, content_type, status, message):
    conn = http.client.HTTPConnection("127.0.0.1", collector.http_port, timeout=10)
    try:
        bad = http_post(conn, body, content_type)
        req, ids = good_request(1)
        # Same keep-alive connection: an unread or half-read body must not poison it.
        good = http_post(conn, req.SerializeToString())
    finally:
        conn.close()
    assert bad.status == status
    if content_type == JSON:
        assert bad.headers["content-type"] == JSON
        st = json_format.ParseDict(orjson.loads(bad.body), status_pb2.Status())
    else:
        assert bad.headers["content-type"] == PROTOBUF
        st = status_pb2.Status.FromString(bad.body)
    assert st.code == code_pb2.INVALID_ARGUMENT and message in st.message and st.message
    assert "retry-after" not in bad.headers
    assert good.status == 200
    assert ids <= stored_spans(collector).keys()


def test_http_unknown_path_is_404_and_the_connection_keeps_serving(collector):
    req, ids = good_request(1)
    conn = http.client.HTTPConnection("127.0.0.1", collector.http_port, timeout=10)
    try:
        missing = http_post(conn, req.SerializeToString(), path="/v1/metrics")
        good = http_post(conn, req.SerializeToString())
    finally:
        conn.close()
    assert missing.status == 404
    assert http_get(collector.http_port, "/v1/nothing").status == 404
    assert good.status == 200
    assert ids <= stored_spans(collector).keys()


def test_http_chunked_body_is_411_and_the_connection_keeps_serving(collector):
    req, ids = good_request(1)
    conn = http.client.HTTPConnection("127.0.0.1", collector.http_port, timeout=10)
    try:
        # Encoded here so headers and body leave in one send, before the server answers.
        data = req.SerializeToString()
        chunked_body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
        conn.request("POST", "/v1/traces", body=chunked_body,
                     headers={"Content-Type": PROTOBUF, "Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        chunked = resp.status
        resp.read()
        good = http_post(conn, req.SerializeToString())
    finally:
        conn.close()
    assert chunked == 411
    assert good.status == 200
    assert set(stored_spans(collector)) == ids


def test_http_negative_content_length_is_refused_without_waiting_for_the_body(collector):
    """A negative length must not mean "read to end of stream": that would bypass the body
    limit and hang the handler on a keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", collector.http_port, timeout=5)
    try:
        conn.putrequest("POST", "/v1/traces")
        conn.putheader("Content-Type", PROTOBUF)
        conn.putheader("Content-Length", "-1")
        conn.endheaders(b"\x0a\x00")
        resp = conn.getresponse()  # times out (fails) if the server waits for end of stream
        status = resp.status
        resp.read()
    finally:
        conn.close()
    assert status in (400, 411)
    assert stored_spans(collector) == {}


# -- partial success ---------------------------------------------------------------------------

def _mixed_request(good: int, bad: int):
    spans = [new_span(f"good-{i}") for i in range(good)] + [bad_span() for _ in range(bad)]
    return new_request(spans), {sp.span_id.hex() for sp in spans[:good]}


def _assert_partial(resp: ExportTraceServiceResponse, bad: int) -> None:
    assert resp.partial_success.rejected_spans == bad
    assert f"{bad} span(s) rejected" in resp.partial_success.error_message
    assert "trace_id must be 16 non-zero bytes, got 15 bytes" in resp.partial_success.error_message


def test_grpc_partial_success_counts_rejected_spans_and_stores_the_rest(collector):
    req, good_ids = _mixed_request(3, 2)
    reply = grpc_export(collector.grpc_port, req.SerializeToString())
    assert reply.code == grpc.StatusCode.OK
    _assert_partial(ExportTraceServiceResponse.FromString(reply.body), 2)
    assert set(stored_spans(collector)) == good_ids


def test_http_protobuf_partial_success_counts_rejected_spans_and_stores_the_rest(collector):
    req, good_ids = _mixed_request(2, 3)
    reply = http_post(collector.http_port, req.SerializeToString())
    assert reply.status == 200 and reply.headers["content-type"] == PROTOBUF
    _assert_partial(ExportTraceServiceResponse.FromString(reply.body), 3)
    assert set(stored_spans(collector)) == good_ids


def test_http_json_partial_success_counts_rejected_spans_and_stores_the_rest(collector):
    req, good_ids = _mixed_request(4, 1)
    body = request_to_json(req)
    assert req.resource_spans[0].scope_spans[0].spans[0].trace_id.hex().encode() in body
    reply = http_post(collector.http_port, body, JSON)
    assert reply.status == 200 and reply.headers["content-type"] == JSON
    _assert_partial(json_format.Parse(reply.body, ExportTraceServiceResponse()), 1)
    assert set(stored_spans(collector)) == good_ids


def test_a_request_of_only_bad_spans_is_a_partial_success_with_nothing_stored(collector):
    req = new_request([bad_span(), bad_span()])
    reply = grpc_export(collector.grpc_port, req.SerializeToString())
    assert reply.code == grpc.StatusCode.OK
    _assert_partial(ExportTraceServiceResponse.FromString(reply.body), 2)
    assert stored_spans(collector) == {}


# -- size limits -------------------------------------------------------------------------------

LIMIT = 64 * 1024


@pytest.fixture()
def small_collector(tmp_path: Path):
    c = start_collector(tmp_path / "store", max_request_bytes=LIMIT)
    try:
        yield c
    finally:
        c.stop(grace_s=1)


def _big_request():
    """A valid request a little over LIMIT bytes."""
    req, ids = good_request(1)
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    kv = sp.attributes.add(key="padding")
    kv.value.string_value = "x" * LIMIT
    assert LIMIT < req.ByteSize() < 2 * LIMIT
    return req, ids


def test_grpc_oversized_request_is_resource_exhausted_without_retry_info(small_collector):
    req, _ = _big_request()
    reply = grpc_export(small_collector.grpc_port, req.SerializeToString())
    assert reply.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # RESOURCE_EXHAUSTED without RetryInfo: the spec tells clients not to retry it.
    assert reply.retry_info() is None and "grpc-status-details-bin" not in reply.trailing
    small, small_ids = good_request(1)
    assert grpc_export(small_collector.grpc_port, small.SerializeToString()).code == \
        grpc.StatusCode.OK
    assert set(stored_spans(small_collector)) == small_ids


def test_grpc_gzip_bomb_is_resource_exhausted(small_collector):
    # 8 MiB of zeros compress to ~8 KiB on the wire; the limit applies after decompression.
    reply = grpc_export(small_collector.grpc_port, bytes(8 * 2**20),
                        compression=grpc.Compression.Gzip)
    assert reply.code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_http_oversized_request_is_413_and_not_stored(small_collector, encoding):
    req, _ = _big_request()
    body = req.SerializeToString()
    headers = {}
    if encoding == "gzip":
        body = gzip.compress(body)  # small on the wire, over the limit once inflated
        assert len(body) < LIMIT
        headers["Content-Encoding"] = "gzip"
    reply = http_post(small_collector.http_port, body, headers=headers)
    assert reply.status == 413
    st = status_pb2.Status.FromString(reply.body)
    assert st.code == code_pb2.RESOURCE_EXHAUSTED and f"larger than {LIMIT} bytes" in st.message
    assert "retry-after" not in reply.headers
    assert stored_spans(small_collector) == {}


def _vm_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))


def test_http_gzip_bomb_is_413_promptly_with_bounded_memory(tmp_path):
    limit = 2**20
    c = start_collector(tmp_path / "store", max_request_bytes=limit)
    try:
        # 50 MiB of zeros, compressed in 1 MiB steps so the test itself never holds them.
        z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = bytes(2**20)
        bomb = b"".join(z.compress(zeros) for _ in range(50)) + z.flush()
        assert len(bomb) < 100 * 1024
        # The collector runs in this process: reset the peak RSS (Linux clear_refs "5") so
        # VmHWM afterwards is the peak of this request alone.
        Path("/proc/self/clear_refs").write_text("5")
        base = _vm_kib("VmRSS")
        started = time.monotonic()
        reply = http_post(c.http_port, bomb, headers={"Content-Encoding": "gzip"})
        elapsed = time.monotonic() - started
        peak = _vm_kib("VmHWM")
        req, ids = good_request(1)
        after = http_post(c.http_port, req.SerializeToString())
        assert reply.status == 413
        assert status_pb2.Status.FromString(reply.body).code == code_pb2.RESOURCE_EXHAUSTED
        assert elapsed < 5
        # Inflating stops at limit + 1 bytes; 50 MiB of output would show as ~50 000 kB.
        assert peak - base < 16 * 1024, f"peak RSS grew by {peak - base} kB"
        assert after.status == 200
        assert set(stored_spans(c)) == ids
    finally:
        c.stop(grace_s=1)


def test_http_concatenated_gzip_members_are_all_decoded(collector):
    """RFC 1952 allows several members in one gzip stream; acknowledging the request while
    keeping only the first member's spans would lose data silently."""
    first, ids1 = good_request(1)
    second, ids2 = good_request(1)
    full = first.SerializeToString() + second.SerializeToString()  # protobuf concatenation
    half = len(first.SerializeToString())
    body = gzip.compress(full[:half]) + gzip.compress(full[half:])
    reply = http_post(collector.http_port, body, headers={"Content-Encoding": "gzip"})
    assert reply.status == 200
    assert set(stored_spans(collector)) == ids1 | ids2


def test_http_unknown_content_encoding_is_400(collector):
    req, _ = good_request(1)
    reply = http_post(collector.http_port, req.SerializeToString(),
                      headers={"Content-Encoding": "br"})
    assert reply.status == 400
    assert "unsupported Content-Encoding" in status_pb2.Status.FromString(reply.body).message
    assert stored_spans(collector) == {}


# -- health ------------------------------------------------------------------------------------

def test_grpc_health_check_is_serving(collector):
    with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "opentelemetry.proto.collector.trace.v1.TraceService"):
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as e:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_http_health_is_ok(collector):
    reply = http_get(collector.http_port, "/health")
    assert reply.status == 200
    assert reply.headers["content-type"] == JSON
    assert orjson.loads(reply.body) == {"status": "ok"}
