"""Backpressure, and the OTLP retry tables row by row (opentelemetry-proto
docs/specification.md; trust.md section 4) with the real OpenTelemetry SDK exporters as clients.

Attempts are counted where they reach the collector (its pipeline, auth or HTTP handler); the
network path between exporter and collector stays real. Delays are kept small by having the
collector ask for short RetryInfo delays: the SDK exporters honour them instead of their own
1 s, 2 s, 4 s... backoff.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from aitrail.collector.auth import Authenticator, hash_token
from aitrail.collector.http_server import _Handler
from aitrail.store.pipeline import Busy, DiskFull, Limits

from .conftest import start_collector
from .wire import count_calls, good_request, grpc_export, http_post, sdk_spans, stored_spans


def _retry_delay_s(info: error_details_pb2.RetryInfo) -> float:
    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9


def _assert_retry_status(st: status_pb2.Status, code: int) -> float:
    """The google.rpc.Status carries exactly one detail, a RetryInfo; returns its delay."""
    assert st.code == code and st.message
    assert len(st.details) == 1
    info = error_details_pb2.RetryInfo()
    assert st.details[0].Unpack(info)
    return _retry_delay_s(info)


def _grpc_exporter(collector, **kwargs) -> GrpcSpanExporter:
    return GrpcSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True,
                            **kwargs)


def _http_exporter(collector, **kwargs) -> HttpSpanExporter:
    return HttpSpanExporter(endpoint=f"http://127.0.0.1:{collector.http_port}/v1/traces",
                            **kwargs)


def _export(exporter, spans) -> SpanExportResult:
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def _fail_first(exc: Exception):
    def before(n: int) -> None:
        if n == 1:
            raise exc
    return before


# -- backpressure ------------------------------------------------------------------------------

def test_backpressure_answers_retry_later_until_the_store_flushes(tmp_path: Path):
    # One byte of unflushed data is enough: the first request gets in, the next are refused.
    c = start_collector(tmp_path / "store",
                        limits=Limits(flush_interval_s=3600, max_unflushed_bytes=1))
    try:
        first, ids = good_request(1)
        assert grpc_export(c.grpc_port, first.SerializeToString()).code == grpc.StatusCode.OK

        refused, _ = good_request(1)
        g = grpc_export(c.grpc_port, refused.SerializeToString())
        assert g.code == grpc.StatusCode.UNAVAILABLE
        # Both places a client may look for the delay hold the same RetryInfo.
        delay = _assert_retry_status(g.status_details(), code_pb2.UNAVAILABLE)
        assert delay > 0
        assert _retry_delay_s(g.retry_info()) == delay

        h = http_post(c.http_port, refused.SerializeToString())
        assert h.status == 503
        assert int(h.headers["retry-after"]) >= 1
        assert _assert_retry_status(status_pb2.Status.FromString(h.body),
                                    code_pb2.UNAVAILABLE) == delay

        c.pipeline.flush()
        again_g, ids_g = good_request(1)
        again_h, ids_h = good_request(1)
        assert grpc_export(c.grpc_port, again_g.SerializeToString()).code == grpc.StatusCode.OK
        c.pipeline.flush()
        assert http_post(c.http_port, again_h.SerializeToString()).status == 200
        assert set(stored_spans(c)) == ids | ids_g | ids_h
    finally:
        c.stop(grace_s=1)


def test_a_nearly_full_disk_answers_resource_exhausted_with_retry_info(tmp_path: Path):
    c = start_collector(tmp_path / "store",
                        limits=Limits(flush_interval_s=3600, min_free_disk_bytes=2**62))
    try:
        req, _ = good_request(1)
        g = grpc_export(c.grpc_port, req.SerializeToString())
        assert g.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # RetryInfo is what makes RESOURCE_EXHAUSTED retryable under the OTLP spec.
        assert _assert_retry_status(g.status_details(), code_pb2.RESOURCE_EXHAUSTED) > 0
        assert g.retry_info() is not None
        h = http_post(c.http_port, req.SerializeToString())
        assert h.status == 503 and int(h.headers["retry-after"]) >= 1
        assert stored_spans(c) == {}
    finally:
        c.stop(grace_s=1)


# -- gRPC rows ---------------------------------------------------------------------------------

@pytest.mark.parametrize("refusal", [
    Busy("the flusher is behind", retry_after_s=0.05),  # UNAVAILABLE + RetryInfo
    DiskFull("the disk is full", retry_after_s=0.05),  # RESOURCE_EXHAUSTED + RetryInfo
], ids=["unavailable", "resource-exhausted"])
def test_grpc_exporter_retries_a_refusal_with_retry_info_then_succeeds(
        collector, monkeypatch, refusal):
    attempts = count_calls(monkeypatch, collector.pipeline, "accept", _fail_first(refusal))
    spans, ids = sdk_spans(2)
    assert _export(_grpc_exporter(collector, timeout=5), spans) == SpanExportResult.SUCCESS
    assert attempts[0] == 2
    assert set(stored_spans(collector)) == ids


def test_grpc_exporter_does_not_retry_unauthenticated(tmp_path: Path, monkeypatch):
    c = start_collector(tmp_path / "store", Authenticator({hash_token("tok"): "t"}))
    try:
        attempts = count_calls(monkeypatch, c.auth, "tenant_for")
        accepted = count_calls(monkeypatch, c.pipeline, "accept")
        spans, _ = sdk_spans(1)
        result = _export(_grpc_exporter(c, timeout=5), spans)
        assert result == SpanExportResult.FAILURE
        assert attempts[0] == 1 and accepted[0] == 0
        assert stored_spans(c) == {}
    finally:
        c.stop(grace_s=1)


def test_grpc_exporter_gives_up_on_an_oversized_request(tmp_path: Path):
    """The collector answers RESOURCE_EXHAUSTED without RetryInfo, which the spec makes
    final. (opentelemetry-python retries it anyway until its timeout; a 1 s timeout keeps
    that short.)"""
    c = start_collector(tmp_path / "store", max_request_bytes=2048)
    try:
        spans, _ = sdk_spans(40)
        assert _export(_grpc_exporter(c, timeout=1), spans) == SpanExportResult.FAILURE
        assert stored_spans(c) == {}
    finally:
        c.stop(grace_s=1)


# -- HTTP rows ---------------------------------------------------------------------------------

def test_http_exporter_retries_503_with_retry_after_then_succeeds(collector, monkeypatch):
    attempts = count_calls(monkeypatch, collector.pipeline, "accept",
                           _fail_first(Busy("the flusher is behind", retry_after_s=0.05)))
    spans, ids = sdk_spans(2)
    # Retry-After is whole seconds (at least 1), so this export takes about a second.
    assert _export(_http_exporter(collector, timeout=5), spans) == SpanExportResult.SUCCESS
    assert attempts[0] == 2
    assert set(stored_spans(collector)) == ids


def test_http_exporter_does_not_retry_400(collector, monkeypatch):
    posts = count_calls(monkeypatch, _Handler, "do_POST")
    accepted = count_calls(monkeypatch, collector.pipeline, "accept")
    spans, _ = sdk_spans(1)
    # A misconfigured client: it says gzip but sends plain protobuf, a 400 on every try.
    exporter = _http_exporter(collector, timeout=5, headers={"Content-Encoding": "gzip"})
    assert _export(exporter, spans) == SpanExportResult.FAILURE
    assert posts[0] == 1 and accepted[0] == 0
    assert stored_spans(collector) == {}


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_http_exporter_does_not_retry_413(tmp_path: Path, monkeypatch, compression):
    limit = 4096
    c = start_collector(tmp_path / "store", max_request_bytes=limit)
    try:
        posts = count_calls(monkeypatch, _Handler, "do_POST")
        accepted = count_calls(monkeypatch, c.pipeline, "accept")
        # Identical spans compress well: gzip'd, the body is under the limit on the wire and
        # over it once inflated, so both of the collector's checks are exercised.
        spans, _ = sdk_spans(60, attrs={"gen_ai.prompt": "p" * 200})
        body = encode_spans(spans).SerializeToString()
        assert len(gzip.compress(body)) < limit < len(body)
        result = _export(_http_exporter(c, timeout=5, compression=compression), spans)
        assert result == SpanExportResult.FAILURE
        assert posts[0] == 1 and accepted[0] == 0
        assert stored_spans(c) == {}
    finally:
        c.stop(grace_s=1)
