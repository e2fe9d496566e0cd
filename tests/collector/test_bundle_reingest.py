"""A bundle's traces.otlp.jsonl is OTLP/JSON any OTLP tool reads: each line parses with
protobuf's json_format (strictly: unknown fields are errors) into ExportTraceServiceRequest,
and sent through a real collector's gRPC path it is stored unchanged."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

from aitrail.store.bundle.export import Selection, export
from aitrail.store.ingest import Ingester
from aitrail.store.otlp_decode import request_to_json
from aitrail.store.otlp_encode import rows_to_request
from aitrail.store.query import Store
from aitrail.store.workspace import Workspace
from tests.conftest import SAMPLES

from .conftest import start_collector

CHANGE = "chg-billing-migration-4821"


def hex_ids_to_base64(doc: dict) -> dict:
    """OTLP/JSON carries ids as hex (OTLP spec, "JSON Protobuf Encoding"); protobuf's own
    JSON mapping wants base64 for bytes: the one conversion every OTLP/JSON reader does."""
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for obj in [sp, *sp.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in obj:
                            obj[key] = base64.b64encode(bytes.fromhex(obj[key])).decode()
    return doc


def test_bundle_otlp_lines_parse_and_re_ingest_over_grpc_unchanged(tmp_path: Path) -> None:
    source = tmp_path / "source"
    assert Ingester(source).add_files([p for p in SAMPLES if "02-migration" in str(p)]).ok
    with Store(source) as st:
        bundle = export(st, Workspace(source, "t"), Selection("change", [CHANGE]),
                        tmp_path / "bundle", as_dir=True).path
        original = st.raw_rows()
    lines = (bundle / "traces.otlp.jsonl").read_bytes().splitlines()
    assert len(lines) == 3
    requests = []
    for line in lines:
        req = json_format.ParseDict(hex_ids_to_base64(json.loads(line)),
                                    ExportTraceServiceRequest(), ignore_unknown_fields=False)
        assert request_to_json(req) == line  # camelCase, hex ids, nothing lost or added
        requests.append(req)

    collector = start_collector(tmp_path / "target")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
            stub = TraceServiceStub(channel)
            for req in requests:
                resp = stub.Export(req, timeout=10)
                assert resp.partial_success.rejected_spans == 0
        collector.pipeline.flush()
    finally:
        collector.stop(grace_s=1)
    with Store(tmp_path / "target") as st:
        assert st.raw_rows() == original
        again = [request_to_json(rows_to_request(st.raw_trace(
            json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"])))
            for line in lines]
    assert again == lines


def test_log_records_travel_with_their_trace_and_still_join_after_import(tmp_path: Path):
    """GenAI content sent as log records (a collector's `logs` dataset) is exported with its
    trace, proven like spans, and after import still fills the span's messages."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from aitrail.store.bundle.import_ import import_bundle
    from aitrail.store.bundle.verify import verify_bundle
    from aitrail.store.integrity.verify import verify_store

    source = tmp_path / "source"
    collector = start_collector(source)
    try:
        resource = Resource.create({"service.name": "reply-drafter"})
        lp = LoggerProvider(resource=resource)
        lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(
            endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True)))
        tp = TracerProvider(resource=resource)
        tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
            endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True)))
        with tp.get_tracer("acme").start_as_current_span("chat gpt-4o") as span:
            span.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.system": "openai",
                                 "gen_ai.request.model": "gpt-4o"})
            lp.get_logger("acme").emit(event_name="gen_ai.user.message",
                                       body={"content": "Where is my refund?"})
            tid = format(span.get_span_context().trace_id, "032x")
        lp.shutdown()
        tp.shutdown()
        collector.pipeline.flush()
    finally:
        collector.stop(grace_s=1)
    with Store(source) as st:
        bundle = export(st, Workspace(source, "t"), Selection("trace", [tid]),
                        tmp_path / "b.tar.gz").path
        before = st.sql("select input_messages from spans").rows
        logs_before = st.sql("select * from logs").rows
    report = verify_bundle(bundle)
    assert report.ok and (report.spans, report.logs) == (1, 1)
    target = tmp_path / "target"
    assert import_bundle(target, bundle).log_records == 1
    with Store(target) as st:
        assert st.sql("select input_messages from spans").rows == before
        assert "Where is my refund?" in before[0]["input_messages"]
        assert st.sql("select * from logs").rows == logs_before
    assert verify_store(target).ok


def _stored_logs(root: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(p) for p in sorted(root.glob("logs/*/*/*/*.parquet"))]
    return pa.concat_tables(tables).sort_by("time_unix_nano").to_pylist()


def test_bundle_log_lines_parse_and_re_ingest_over_grpc_unchanged(tmp_path: Path) -> None:
    """logs.otlp.jsonl: one ExportLogsServiceRequest per trace, which the real collector's
    LogsService stores as the very rows the bundle came from."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    from aitrail.store.otlp_decode import logs_request_to_json

    source = tmp_path / "source"
    collector = start_collector(source)
    try:
        lp = LoggerProvider(resource=Resource.create({"service.name": "reply-drafter"}))
        lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(
            endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True)))
        from opentelemetry.sdk.trace import TracerProvider

        tracer = TracerProvider().get_tracer("acme")  # gives the records trace and span ids
        with tracer.start_as_current_span("chat") as span:
            lp.get_logger("acme").emit(event_name="gen_ai.user.message",
                                       body={"content": "Where is my refund?", "n": [1, 2.5]},
                                       attributes={"gen_ai.system": "openai"})
            lp.get_logger("acme").emit(body="plain text", severity_text="WARN",
                                       attributes={"event.name": "from.attribute"})
            tid = format(span.get_span_context().trace_id, "032x")
        lp.shutdown()
        collector.pipeline.flush()
    finally:
        collector.stop(grace_s=1)
    # Export selects traces by their spans: store one for the records' trace.
    span_req = json_format.ParseDict(hex_ids_to_base64({"resourceSpans": [{"scopeSpans": [{
        "spans": [{"traceId": tid, "spanId": "00f067aa0ba902b7", "name": "chat",
                   "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}),
        ExportTraceServiceRequest())
    ing = Ingester(source)
    ing.add(span_req)
    assert ing.close().ok
    with Store(source) as st:
        bundle = export(st, Workspace(source, "t"), Selection("trace", [tid]),
                        tmp_path / "bundle", as_dir=True).path
    original = _stored_logs(source)
    [line] = (bundle / "logs.otlp.jsonl").read_bytes().splitlines()
    doc = json.loads(line)
    for rl in doc["resourceLogs"]:
        for sl in rl["scopeLogs"]:
            for lr in sl["logRecords"]:
                for key in ("traceId", "spanId"):
                    lr[key] = base64.b64encode(bytes.fromhex(lr[key])).decode()
    req = json_format.ParseDict(doc, ExportLogsServiceRequest(), ignore_unknown_fields=False)
    assert logs_request_to_json(req) == line
    assert len(original) == 2

    target = tmp_path / "target"
    collector = start_collector(target)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
            resp = LogsServiceStub(channel).Export(req, timeout=10)
            assert resp.partial_success.rejected_log_records == 0
        collector.pipeline.flush()
    finally:
        collector.stop(grace_s=1)
    assert _stored_logs(target) == original  # every stored column, not only the view's
