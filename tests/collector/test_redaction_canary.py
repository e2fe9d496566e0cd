"""The redaction canary (issue 5): realistic fake secrets of every rule class, planted in span
names, status messages, span, event, link and resource attributes, GenAI message JSON and log
bodies, sent through every way into a store: the OpenTelemetry SDK's gRPC and HTTP/protobuf
exporters, `aitrail send`, OTLP/JSON POSTs, and `aitrail ingest` (OTLP/JSON in process,
gzip'd protobuf in worker processes). After a graceful stop, and again after compaction, not
one byte of the store directory holds any of them in any form; and every one is accounted for
in a redaction record.

A control store with redaction switched off receives a corpus the same way: the same scan
finds every secret there (in the WAL, inside the compressed Parquet pages, in the text
index), so a clean scan means something.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import grpc
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace.export import SpanExportResult

from aitrail.cli import main
from aitrail.collector.serve import Collector
from aitrail.store.compact import compact_store
from aitrail.store.config import load_config
from aitrail.store.ingest import Ingester
from aitrail.store.otlp_decode import request_to_json
from aitrail.store.query import Store
from aitrail.store.redaction import key_path

from .canary import (
    ALL_CLASSES,
    CUSTOM_RULE,
    LOG_PATHS,
    SPAN_PATHS,
    Plant,
    Scan,
    corpus,
    encodings,
    index_words,
    logs_request,
    scan_store,
    sdk_logs,
    sdk_spans,
    trace_request,
)
from .conftest import start_collector
from .wire import JSON, grpc_export, http_post, new_span, stored_spans

# Each way in gets its own secrets (its own seed), so a finding names the path that leaked.
TRACE_WAYS = ("grpc-sdk", "aitrail-send", "http-protobuf", "http-json", "ingest", "ingest-jobs")
LOG_WAYS = ("grpc-sdk", "http-protobuf", "http-json")
SEEDS = {way: 1000 + i for i, way in enumerate(TRACE_WAYS)}


def _toml(classes: list[str]) -> str:
    rule = f'[[redaction.rules]]\nname = "{CUSTOM_RULE["name"]}"\n' \
           f"pattern = '{CUSTOM_RULE['pattern']}'\n"
    return f"[redaction]\nclasses = {json.dumps(classes)}\n\n{rule}"


@dataclass
class Canary:
    root: Path
    plants: dict[str, list[Plant]]  # way -> its secrets
    flushed: Scan                   # the store after the collector's graceful stop
    compacted: Scan                 # ... and after compaction and the text index


def _export(exporter, batch) -> object:
    try:
        return exporter.export(batch)
    finally:
        exporter.shutdown()


def _send_everything(c: Collector, plants: dict[str, list[Plant]], tmp: Path) -> None:
    """Every way in that goes through the running collector."""
    grpc_at, http_at = f"127.0.0.1:{c.grpc_port}", f"http://127.0.0.1:{c.http_port}"

    mine = plants["grpc-sdk"]
    assert _export(GrpcSpans(endpoint=grpc_at, insecure=True, timeout=10),
                   sdk_spans(mine, "canary-grpc-sdk")) == SpanExportResult.SUCCESS
    assert _export(GrpcLogs(endpoint=grpc_at, insecure=True, timeout=10),
                   sdk_logs(mine, "canary-grpc-sdk")) == LogRecordExportResult.SUCCESS

    mine = plants["http-protobuf"]
    assert _export(HttpSpans(endpoint=f"{http_at}/v1/traces", timeout=10),
                   sdk_spans(mine, "canary-http-protobuf")) == SpanExportResult.SUCCESS
    assert _export(HttpLogs(endpoint=f"{http_at}/v1/logs", timeout=10),
                   sdk_logs(mine, "canary-http-protobuf")) == LogRecordExportResult.SUCCESS

    mine = plants["http-json"]
    body = request_to_json(trace_request(mine, "canary-http-json"))
    assert http_post(c.http_port, body, JSON).status == 200
    doc = json_format.MessageToDict(logs_request(mine, "canary-http-json"))
    assert http_post(c.http_port, orjson.dumps(doc), JSON, path="/v1/logs").status == 200

    sent = tmp / "send.jsonl"
    sent.write_bytes(request_to_json(trace_request(plants["aitrail-send"],
                                                   "canary-aitrail-send")) + b"\n")
    assert main(["send", "--endpoint", grpc_at, str(sent)]) == 0


def _ingest_files(root: Path, config_path: Path, plants: dict[str, list[Plant]],
                  tmp: Path) -> None:
    """`aitrail ingest` of a gzip'd protobuf file in worker processes, and the Ingester of
    an OTLP/JSON file in this process."""
    files = {"ingest": tmp / "ingest.jsonl", "ingest-jobs": tmp / "ingest-jobs.pb.gz"}
    files["ingest"].write_bytes(
        request_to_json(trace_request(plants["ingest"], "canary-ingest")) + b"\n")
    files["ingest-jobs"].write_bytes(gzip.compress(
        trace_request(plants["ingest-jobs"], "canary-ingest-jobs").SerializeToString()))
    assert main(["--store", str(root), "--config", str(config_path), "ingest", "--jobs", "2",
                 str(files["ingest-jobs"])]) == 0
    report = Ingester(root, redaction=load_config(config_path).redaction).add_files(
        [files["ingest"]])
    assert report.ok and report.spans == len(plants["ingest"]) + 1


class _Logged(logging.Handler):
    """Every log record of the process, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _fill(root: Path, tmp: Path, classes: list[str],
          plants: dict[str, list[Plant]]) -> tuple[Scan, Scan]:
    """Send and ingest every corpus, stop gracefully, scan; compact, scan again. What the
    process logged meanwhile is scanned with the store (the collector writes no log file
    into the store; its log goes to stderr)."""
    config_path = tmp / "aitrail.toml"
    config_path.write_text(_toml(classes))
    logged, top = _Logged(), logging.getLogger()
    level = top.level
    top.addHandler(logged)
    top.setLevel(logging.DEBUG)
    try:
        c = start_collector(root, redaction=load_config(config_path).redaction)
        try:
            _send_everything(c, plants, tmp)
        finally:
            c.stop(grace_s=5)
        _ingest_files(root, config_path, plants, tmp)
        everything = [p for ps in plants.values() for p in ps]
        flushed = scan_store(root, everything)
        report = compact_store(root, now=datetime.now(UTC) + timedelta(days=1))
        assert report.partitions and not report.skipped, report.skipped
    finally:
        top.removeHandler(logged)
        top.setLevel(level)
    log = "\n".join(logged.lines).encode()
    assert b"redaction:" in log  # the Redactor's start-up line: the capture works
    return flushed, scan_store(root, everything, {"the process log": log})


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Canary:
    tmp = tmp_path_factory.mktemp("canary")
    plants = {way: corpus(seed) for way, seed in SEEDS.items()}
    flushed, compacted = _fill(tmp / "store", tmp, ALL_CLASSES, plants)
    return Canary(tmp / "store", plants, flushed, compacted)


def _describe(findings: list) -> str:
    return "\n".join(f"{f.plant.rule} ({f.plant.secret[:12]}...) as {f.form} in {f.where}"
                     for f in findings[:20])


def test_no_planted_secret_is_anywhere_in_the_store_in_any_form(canary):
    for scan in (canary.flushed, canary.compacted):
        assert not scan.findings, _describe(scan.findings)
    # The scans saw the store's every kind of file: WAL segments and dedupe digests, flushed
    # and compacted Parquet (decoded), the text index, the key, checkpoints and sidecars.
    assert {"wal", "seen", "parquet", "json", "key"} <= canary.flushed.kinds
    assert "text-index" in canary.compacted.kinds and canary.compacted.indexes >= 1
    assert canary.flushed.parquet_files >= 2 and canary.compacted.parquet_files >= 2


def _expected(plant: Plant, key: bytes, path: str) -> dict[str, str]:
    return {"rule": plant.rule, "class": plant.cls, "path": path, "fp": plant.fp(key)}


def test_every_planted_secret_has_a_redaction_record_where_it_was(canary):
    key = key_path(canary.root).read_bytes()
    with Store(canary.root) as st:
        spans = st.sql("select service_name, name, attributes, redactions from spans",
                       limit=None).rows
        logs = st.sql("select service_name, attributes from logs", limit=None).rows
    for way, plants in canary.plants.items():
        service = f"canary-{way}"
        mine = [r for r in spans if r["service_name"] == service]
        assert len(mine) == len(plants) + 1, way
        by_plant = {json.loads(r["attributes"]).get("canary.plant"): r for r in mine}
        carrier = by_plant.pop(None)
        assert carrier["name"] == "resource carrier"
        have = json.loads(carrier["redactions"])
        for i, p in enumerate(plants):
            assert _expected(p, key, f"resource.attributes.canary.r{i}") in have, (way, p.rule)
            row = by_plant[i]
            entries = json.loads(row["redactions"])
            for path in SPAN_PATHS:
                assert _expected(p, key, path) in entries, (way, p.rule, path)
            assert "[REDACTED:" in row["name"]
        if way not in LOG_WAYS:
            continue
        records = [json.loads(r["attributes"]) for r in logs if r["service_name"] == service]
        assert len(records) == len(plants) + 1, way
        by_plant = {a["canary.plant"]: json.loads(a["aitrail.redactions"]) for a in records}
        carrier_log = by_plant.pop(-1)
        for i, p in enumerate(plants):
            for path in LOG_PATHS:
                assert _expected(p, key, path) in by_plant[i], (way, p.rule, path)
            assert _expected(p, key, f"body.b{i}") in carrier_log, (way, p.rule)
            assert _expected(p, key, f"resource.attributes.canary.r{i}") in carrier_log


def test_the_scanner_finds_every_form_it_looks_for():
    """Each secret, encoded inside a longer value at each of the three base64 alignments,
    JSON-escaped inside JSON inside JSON, or zstd-compressed in Parquet, is found."""
    plants = corpus(7)
    for p in plants:
        for pad in range(3):
            around = os.urandom(pad) + p.secret.encode() + os.urandom(5)
            for blob in (base64.b64encode(around), base64.urlsafe_b64encode(around),
                         binascii.hexlify(around), binascii.hexlify(around).upper(),
                         quote(around, safe="").encode(), quote_plus(around).encode(),
                         json.dumps(json.dumps({"v": p.text})).encode()):
                assert any(n in blob for form in p.forms()
                           for n in encodings(form).values()), (p.rule, pad, blob)


def test_the_scanner_reads_inside_compressed_parquet(tmp_path):
    plants = corpus(8)
    table = pa.table({"text": [p.text for p in plants]})
    pq.write_table(table, tmp_path / "x.parquet", compression="zstd")
    scan = scan_store(tmp_path, plants)
    assert all(any(f.where == "x.parquet values" for f in scan.found(p)) for p in plants)


def test_with_redaction_off_the_same_scan_finds_every_secret(tmp_path):
    """The control: the same ways in with every class switched off. Proves the scan looks
    where the secrets would be."""
    plants = {way: corpus(SEEDS[way] + 500) for way in TRACE_WAYS}
    flushed, compacted = _fill(tmp_path / "store", tmp_path, [], plants)
    indexed = 0
    for way, ps in plants.items():
        for p in ps:
            where = {f.where for f in flushed.found(p)}
            # in the WAL's raw bytes (what the collector received), and inside the
            # zstd-compressed Parquet pages
            if not way.startswith("ingest"):
                assert any(w.startswith("_wal") for w in where), (way, p.rule)
            assert any(w.endswith(" values") and ".parquet" in w for w in where), (way, p.rule)
            if index_words(p):
                indexed += 1
                assert any(f.where.endswith(" index") for f in compacted.found(p)), p.rule
    assert indexed >= 15 * len(plants)  # the text index check is not vacuous


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    out, n = bytearray([number << 3 | 2]), len(payload)
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + payload


def test_a_secret_in_a_field_that_parsing_overrides_never_reaches_the_wal(collector):
    """A span sent as two pieces (protobuf merges them: the second's name wins) carries a
    key only in its bytes: the collector must not store those bytes as received. (Found by
    this canary: the WAL kept them when nothing was masked in the parsed request.)"""
    plants = [p for p in corpus(77) if p.rule == "github-pat"]
    hidden = Span(name=plants[0].text).SerializeToString()
    spans = []
    for way in ("grpc", "http"):
        span = new_span(f"clean {way}")
        spans.append(span.span_id.hex())
        raw = _field(1, _field(2, _field(2, hidden + span.SerializeToString())))
        assert ExportTraceServiceRequest.FromString(raw).resource_spans[0].scope_spans[0] \
            .spans[0].name == f"clean {way}"
        if way == "grpc":
            assert grpc_export(collector.grpc_port, raw).code == grpc.StatusCode.OK
        else:
            assert http_post(collector.http_port, raw).status == 200
    assert set(stored_spans(collector)) == set(spans)
    collector.stop(grace_s=1)
    scan = scan_store(collector.opts.store, plants)
    assert "wal" in scan.kinds and not scan.findings, _describe(scan.findings)
