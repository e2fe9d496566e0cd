"""The collector applies the store's retention policy on its own (docs/retention.md)."""

from __future__ import annotations

import shutil

from aitrail.store.integrity.verify import verify_store
from aitrail.store.retention.policy import RetentionPolicy

from .conftest import start_collector


def test_a_running_collector_retires_what_is_past_retention(sample_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(sample_store, store)
    n = len(list(store.glob("spans/*/*/*/*.parquet")))
    c = start_collector(store, retention=RetentionPolicy(days=1, interval_s=3600))
    try:
        assert c.retention.ran.wait(60)
        assert c.retention.error is None
        assert len(c.retention.last.retired) == n
    finally:
        c.stop(grace_s=1)
    assert not list(store.glob("spans/*/*/*/*.parquet"))
    report = verify_store(store)
    assert report.ok and report.retired == n


def test_log_records_are_retired_and_held_with_their_traces(tmp_path):
    from datetime import UTC, datetime, timedelta

    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from aitrail.store.retention.apply import apply_retention
    from aitrail.store.retention.holds import add_hold, remove_hold

    store = tmp_path / "store"
    c = start_collector(store)
    try:
        endpoint = f"127.0.0.1:{c.grpc_port}"
        lp = LoggerProvider()
        lp.add_log_record_processor(SimpleLogRecordProcessor(
            OTLPLogExporter(endpoint=endpoint, insecure=True)))
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint,
                                                                   insecure=True)))
        ids = []
        for name in ("kept", "retired"):
            with tp.get_tracer("t").start_as_current_span(name) as span:
                lp.get_logger("t").emit(event_name="gen_ai.user.message",
                                        body={"content": name})
                ids.append(f"{span.get_span_context().trace_id:032x}")
        lp.shutdown()
        tp.shutdown()
    finally:
        c.stop(grace_s=1)
    assert list(store.glob("logs/*/*/*/*.parquet")) and list(store.glob("spans/*/*/*/*.parquet"))
    hold = add_hold(store, traces=[ids[0]])
    later = datetime.now(UTC) + timedelta(days=10)
    report = apply_retention(store, RetentionPolicy(days=1), now=later)
    assert {v.dataset for v in report.held} == {"spans", "logs"}
    # Both traces were flushed into the same files: each file is kept whole for the held one.
    assert not report.retired
    remove_hold(store, hold.id)
    report = apply_retention(store, RetentionPolicy(days=1), now=later)
    assert {v.dataset for v in report.retired} == {"spans", "logs"}
    assert not list(store.glob("*/*/*/*/*.parquet"))
    retired = len(report.retired)
    report = verify_store(store)
    assert report.ok and report.retired == retired >= 2
