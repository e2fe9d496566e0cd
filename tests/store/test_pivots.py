"""Pivots: every span that shares a value with this one."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from aitrail.store.errors import BadInput
from aitrail.store.ingest import Ingester
from aitrail.store.pipeline import Limits, Pipeline
from aitrail.store.pivots import Pivot, pivots_of, spans_sharing
from aitrail.store.query import Store

from .redaction_samples import LEAK_TRACES, OTHER_TRACE, leak_story


@pytest.fixture()
def store(sample_store):
    with Store(sample_store) as s:
        yield s


def test_who_else_saw_the_leaked_ticket(store):
    res = spans_sharing(store, Pivot("document", "zendesk:ticket/77120", ""))
    assert {r["trace_id"] for r in res.rows} == {"a037a304a4cae490e5bc07c64abe83a5",
                                                  "1f7e15504f42cad38214d302ff8a398b"}
    assert all(r["user_id"] and r["detail"].startswith("rank ") for r in res.rows)
    starts = [r["start_time"] for r in res.rows]
    assert starts == sorted(starts, reverse=True)


def test_pivots_of_a_retrieval_offer_its_documents_first(store):
    rows = store.trace("a037a304a4cae490e5bc07c64abe83a5").rows
    retrieval = next(r for r in rows if r["ai_kind"] == "retrieval")
    offered = pivots_of(retrieval)
    assert offered[0] == Pivot("document", "zendesk:ticket/77120",
                               "document zendesk:ticket/77120")
    assert {p.kind for p in offered} >= {"document", "change", "service"}


def test_policy_pivot_lists_every_decision_under_that_version(store):
    res = spans_sharing(store, Pivot("policy", "db-migrations v3", ""))
    details = sorted(r["detail"] for r in res.rows)
    assert any("verdict review, enforced escalate" in d for d in details)
    assert len(res.rows) == 2


def test_template_attribute_pivot(store):
    rows = store.sql("select * from spans where attributes->>'reply_drafter.template.id' "
                     "is not null").rows
    assert rows
    offered = [p for p in pivots_of(rows[0]) if p.kind == "attribute"]
    assert offered and offered[0].value.startswith("reply_drafter.template.id=")
    res = spans_sharing(store, offered[0])
    assert len(res.rows) >= 1 and rows[0]["span_id"] in {r["span_id"] for r in res.rows}


def test_model_pivot_truncates_honestly(store):
    res = spans_sharing(store, Pivot("model", "gpt-4o", ""), limit=3)
    assert len(res.rows) == 3 and res.truncated


def test_values_are_parameters_and_kinds_an_allow_list(store):
    assert spans_sharing(store, Pivot("user", "x' OR '1'='1", "")).rows == []
    with pytest.raises(BadInput, match="unknown pivot"):
        spans_sharing(store, Pivot("status_code = 2 OR 1", "x", ""))
    with pytest.raises(BadInput):
        spans_sharing(store, Pivot("attribute", 'a") or (1=1', ""))


@pytest.fixture()
def leak_store(tmp_path):
    """The leak story ingested from an OTLP/JSON file, and the token once more in a log
    record of the fourth trace's span, received by a collector pipeline."""
    doc, token, aws = leak_story()
    (tmp_path / "leak.json").write_bytes(orjson.dumps(doc))
    root = tmp_path / "store"
    assert Ingester(root).add_files([tmp_path / "leak.json"]).ok
    logs = ExportLogsServiceRequest()
    rec = logs.resource_logs.add().scope_logs.add().log_records.add()
    rec.trace_id, rec.span_id = bytes.fromhex(OTHER_TRACE), bytes.fromhex("4e" + "0" * 13 + "1")
    rec.body.string_value = f"retrying the push with {token}"
    p = Pipeline(root, "logs", limits=Limits(flush_interval_s=3600, compact_interval_s=0))
    p.start()
    try:
        p.accept_logs(logs, "default")
    finally:
        p.stop()
    with Store(root) as s:
        yield s, token, aws


def test_a_fingerprint_pivot_finds_every_trace_the_secret_appeared_in(leak_store):
    store, token, _ = leak_store
    chat = next(r for r in store.trace(LEAK_TRACES[0]).rows)
    first = pivots_of(chat)[0]
    assert first.kind == "redaction" and first.label == f"secret {first.value} (github-pat)"
    res = spans_sharing(store, first)
    assert {r["trace_id"] for r in res.rows} == {*LEAK_TRACES, OTHER_TRACE}
    detail = {r["trace_id"]: r["detail"] for r in res.rows}
    assert detail[LEAK_TRACES[0]] == (
        "github-pat at attributes.gen_ai.input.messages[0].parts[0].content")
    assert detail[OTHER_TRACE] == "log record: github-pat at body"
    assert not any(token in str(v) for r in res.rows for v in r.values())
    # the AWS key of the fourth trace is another fingerprint, found in that trace only
    other = next(r for r in store.trace(OTHER_TRACE).rows)
    (aws_pivot,) = [p for p in pivots_of(other) if p.kind == "redaction"]
    assert aws_pivot.value != first.value and "aws-access-key-id" in aws_pivot.label
    assert {r["trace_id"] for r in spans_sharing(store, aws_pivot).rows} == {OTHER_TRACE}


def test_a_fingerprint_pivot_takes_only_a_fingerprint(leak_store):
    store, _, _ = leak_store
    for bad in ("", "x' OR '1'='1", "ABCDEF012345", "0123456789abc"):
        with pytest.raises(BadInput, match="fingerprint"):
            spans_sharing(store, Pivot("redaction", bad, ""))
    assert spans_sharing(store, Pivot("redaction", "0" * 12, "")).rows == []
