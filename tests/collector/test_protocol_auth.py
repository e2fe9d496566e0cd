"""Bearer-token authentication over the network: a span's tenant comes from the token that
sent it, never from the span's own attributes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from aitrail.collector.auth import Authenticator, hash_token
from aitrail.collector.http_server import _Handler
from aitrail.collector.options import ServeError, ServeOptions
from aitrail.collector.serve import Collector
from aitrail.store.query import Store

from .conftest import start_collector
from .wire import count_calls, good_request, grpc_export, http_post, sdk_spans, stored_spans

TOKENS = {hash_token("tok-a"): "tenant-a", hash_token("tok-b"): "tenant-b"}
CLAIMS_B = {"tenant": "tenant-b", "aitrail.tenant": "tenant-b"}


@pytest.fixture()
def authed(tmp_path: Path) -> Iterator[Collector]:
    c = start_collector(tmp_path / "store", Authenticator(TOKENS))
    try:
        yield c
    finally:
        c.stop(grace_s=1)


REFUSED = [
    pytest.param({}, "missing authorization", id="no-token"),
    pytest.param({"authorization": "Bearer tok-c"}, "unknown token", id="unknown-token"),
    pytest.param({"authorization": "Bearer " + hash_token("tok-a")}, "unknown token",
                 id="the-hash-is-not-the-token"),
    pytest.param({"authorization": "Basic dG9rLWE="}, "Bearer", id="not-bearer"),
    pytest.param({"authorization": "Bearer "}, "Bearer", id="empty-bearer"),
]


@pytest.mark.parametrize(("headers", "message"), REFUSED)
def test_grpc_without_a_known_token_is_unauthenticated_and_nothing_is_stored(
        authed, headers, message):
    req, _ = good_request(2)
    reply = grpc_export(authed.grpc_port, req.SerializeToString(), metadata=headers.items())
    assert reply.code == grpc.StatusCode.UNAUTHENTICATED
    assert message in reply.details
    assert reply.retry_info() is None
    assert stored_spans(authed) == {}
    assert authed.pipeline.stats["accepted_spans"] == 0


@pytest.mark.parametrize(("headers", "message"), REFUSED)
def test_http_without_a_known_token_is_401_and_nothing_is_stored(authed, headers, message):
    req, _ = good_request(2)
    reply = http_post(authed.http_port, req.SerializeToString(), headers=headers)
    assert reply.status == 401
    st = status_pb2.Status.FromString(reply.body)
    assert st.code == code_pb2.UNAUTHENTICATED and message in st.message
    assert stored_spans(authed) == {}
    assert authed.pipeline.stats["accepted_spans"] == 0


def test_a_token_decides_the_tenant_whatever_the_spans_claim(authed):
    g_req, g_ids = good_request(2, resource=CLAIMS_B)
    h_req, h_ids = good_request(2, resource=CLAIMS_B)
    for sp in h_req.resource_spans[0].scope_spans[0].spans:  # span attributes claim it too
        kv = sp.attributes.add(key="aitrail.tenant")
        kv.value.string_value = "tenant-b"
    g = grpc_export(authed.grpc_port, g_req.SerializeToString(),
                    metadata=[("authorization", "Bearer tok-a")])
    h = http_post(authed.http_port, h_req.SerializeToString(),
                  headers={"Authorization": "bearer  tok-a"})  # scheme is case-insensitive
    assert g.code == grpc.StatusCode.OK and h.status == 200
    assert stored_spans(authed) == dict.fromkeys(g_ids | h_ids, "tenant-a")
    assert [p.name for p in (authed.opts.store / "spans").iterdir()] == ["tenant=tenant-a"]


def test_the_same_spans_from_two_tenants_are_stored_for_each(authed):
    """Deduplication is per tenant: tenant B resending A's exact bytes is not a duplicate."""
    req, ids = good_request(1)
    body = req.SerializeToString()
    for token in ("tok-a", "tok-b"):
        reply = grpc_export(authed.grpc_port, body, metadata=[("authorization",
                                                               f"Bearer {token}")])
        assert reply.code == grpc.StatusCode.OK
    authed.pipeline.flush()
    with Store(authed.opts.store) as st:
        rows = st.sql("select tenant, span_id from spans order by tenant").rows
    assert [(r["tenant"], r["span_id"]) for r in rows] == \
        [("tenant-a", next(iter(ids))), ("tenant-b", next(iter(ids)))]


def test_sdk_exporters_with_a_bearer_token_store_under_its_tenant(authed):
    g_spans, g_ids = sdk_spans(2, resource=CLAIMS_B)
    h_spans, h_ids = sdk_spans(2, resource=CLAIMS_B)
    grpc_exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{authed.grpc_port}", insecure=True,
                                     headers={"authorization": "Bearer tok-a"}, timeout=5)
    http_exporter = HttpSpanExporter(
        endpoint=f"http://127.0.0.1:{authed.http_port}/v1/traces",
        headers={"authorization": "Bearer tok-b"}, timeout=5)
    try:
        assert grpc_exporter.export(g_spans) == SpanExportResult.SUCCESS
        assert http_exporter.export(h_spans) == SpanExportResult.SUCCESS
    finally:
        grpc_exporter.shutdown()
        http_exporter.shutdown()
    assert stored_spans(authed) == {**dict.fromkeys(g_ids, "tenant-a"),
                                    **dict.fromkeys(h_ids, "tenant-b")}


def test_http_exporter_does_not_retry_401(authed, monkeypatch):
    posts = count_calls(monkeypatch, _Handler, "do_POST")
    spans, _ = sdk_spans(1)
    exporter = HttpSpanExporter(endpoint=f"http://127.0.0.1:{authed.http_port}/v1/traces",
                                headers={"authorization": "Bearer wrong"}, timeout=5)
    try:
        assert exporter.export(spans) == SpanExportResult.FAILURE
    finally:
        exporter.shutdown()
    assert posts[0] == 1
    assert stored_spans(authed) == {}


@pytest.mark.parametrize("which", ["grpc_address", "http_address"])
def test_listening_beyond_loopback_without_tokens_needs_insecure(tmp_path: Path, which):
    addrs = {"grpc_address": "127.0.0.1:0", "http_address": "127.0.0.1:0", which: "0.0.0.0:0"}
    with pytest.raises(ServeError, match="--insecure"):
        Collector(ServeOptions(store=tmp_path / "store", writer_id="test", **addrs),
                  Authenticator({}))
    assert not (tmp_path / "store").exists()  # refused before anything was opened
