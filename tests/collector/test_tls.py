"""TLS and mutual TLS on both protocols, with certificates made by openssl for the test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from .conftest import start_collector
from .test_exporters import make_spans, stored


@pytest.fixture(autouse=True)
def _no_global_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the exporter's own
    # certificate_file (a known requests behaviour); some machines set them globally.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "1", "-subj", "/CN=aitrail-test-ca", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", "san.cnf",
                 cwd=d)
    return d


def test_tls_on_grpc_and_http(certs, tmp_path):
    c = start_collector(tmp_path / "s", tls_cert=certs / "server.pem",
                        tls_key=certs / "server.key")
    try:
        creds = grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes())
        g = GrpcSpanExporter(endpoint=f"127.0.0.1:{c.grpc_port}", insecure=False,
                             credentials=creds)
        assert g.export(make_spans("svc", "chg-tls-g")) == SpanExportResult.SUCCESS
        g.shutdown()
        h = HttpSpanExporter(endpoint=f"https://127.0.0.1:{c.http_port}/v1/traces",
                             certificate_file=str(certs / "ca.pem"), timeout=5)
        assert h.export(make_spans("svc", "chg-tls-h")) == SpanExportResult.SUCCESS
        h.shutdown()
        plain = GrpcSpanExporter(endpoint=f"127.0.0.1:{c.grpc_port}", insecure=True,
                                 timeout=2)
        assert plain.export(make_spans("svc", "chg-plain")) == SpanExportResult.FAILURE
        plain.shutdown()
        assert len(stored(c, "chg-tls-g")) == 2 and len(stored(c, "chg-tls-h")) == 2
        assert stored(c, "chg-plain") == []
    finally:
        c.stop(grace_s=1)


def test_mutual_tls_refuses_clients_without_a_certificate(certs, tmp_path):
    c = start_collector(tmp_path / "s", tls_cert=certs / "server.pem",
                        tls_key=certs / "server.key", tls_client_ca=certs / "ca.pem")
    try:
        ca = (certs / "ca.pem").read_bytes()
        anonymous = GrpcSpanExporter(endpoint=f"127.0.0.1:{c.grpc_port}", insecure=False,
                                     credentials=grpc.ssl_channel_credentials(ca), timeout=2)
        assert anonymous.export(make_spans("svc", "chg-anon")) == SpanExportResult.FAILURE
        anonymous.shutdown()
        creds = grpc.ssl_channel_credentials(
            ca, private_key=(certs / "client.key").read_bytes(),
            certificate_chain=(certs / "client.pem").read_bytes())
        known = GrpcSpanExporter(endpoint=f"127.0.0.1:{c.grpc_port}", insecure=False,
                                 credentials=creds)
        assert known.export(make_spans("svc", "chg-mtls")) == SpanExportResult.SUCCESS
        known.shutdown()
        h = HttpSpanExporter(endpoint=f"https://127.0.0.1:{c.http_port}/v1/traces",
                             certificate_file=str(certs / "ca.pem"),
                             client_key_file=str(certs / "client.key"),
                             client_certificate_file=str(certs / "client.pem"), timeout=5)
        assert h.export(make_spans("svc", "chg-mtls-h")) == SpanExportResult.SUCCESS
        h.shutdown()
        assert len(stored(c, "chg-mtls")) == 2 and len(stored(c, "chg-mtls-h")) == 2
        assert stored(c, "chg-anon") == []
    finally:
        c.stop(grace_s=1)
