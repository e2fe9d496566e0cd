"""Free-text search: whole words, case-insensitive; the same answers from a scan and from the
tantivy index that compaction builds; files the index does not cover are still searched."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from aitrail.store import query as query_mod
from aitrail.store.compact import compact_store
from aitrail.store.errors import BadInput
from aitrail.store.ingest import Ingester
from aitrail.store.query import Store
from aitrail.store.text_index import TEXT_DIR, words

T0 = int(datetime(2026, 11, 20, 8, tzinfo=UTC).timestamp()) * 10**9
HOUR = 3600 * 10**9
LATER = datetime(2026, 11, 25, tzinfo=UTC)
VOCAB = ["invoice", "refund", "lock", "timeout", "tax_region", "customer", "ticket", "Leak",
         "migration", "approve", "rollback", "schema", "prod-eu", "billing", "runbook"]


def _span(rng: random.Random, tid: bytes, start: int) -> Span:
    text = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(3, 8)))
    return Span(trace_id=tid, span_id=rng.randbytes(8), name="chat", kind=3,
                start_time_unix_nano=start, end_time_unix_nano=start + 1000,
                attributes=[_kv("gen_ai.operation.name", "chat"),
                            _kv("gen_ai.input.messages", _messages("user", f"Q: {text}?")),
                            _kv("gen_ai.output.messages", _messages("assistant",
                                                                    text.upper()))])


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _messages(role: str, content: str) -> str:
    return orjson.dumps([{"role": role, "parts": [{"type": "text", "content": content}]}]
                        ).decode()


def _ingest(root: Path, rng: random.Random, traces: int, hours: int, writer: str) -> None:
    spans = []
    for _ in range(traces):
        tid, start = rng.randbytes(16), T0 + rng.randrange(hours * HOUR)
        spans += [_span(rng, tid, start + i) for i in range(2)]
    ing = Ingester(root, "acme", writer_id=writer)
    ing.add(ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        scope_spans=[ScopeSpans(spans=spans)])]))
    ing.flush()


QUERIES = ["lock timeout", "TIMEOUT", "tax", "region", "leak refund", "prod", "eu billing",
           "nonexistent", "runbook schema rollback"]


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    rng = random.Random(11)
    for w in range(3):
        _ingest(tmp_path, rng, 60, 3, f"w{w}")
    return tmp_path


def test_words_are_runs_of_letters_and_digits() -> None:
    assert words("Lock-TIMEOUT on tax_region, lock!") == ["lock", "timeout", "on", "tax",
                                                          "region"]
    assert words("  ...  ") == []


def test_whole_words_case_insensitive(store: Path) -> None:
    with Store(store) as st:
        def n(text: str) -> int:
            return st.sql("select count(*) as n from spans where "
                          f"regexp_matches(lower(coalesce(input_messages, '') || ' ' || "
                          f"coalesce(output_messages, '')), '(^|[^a-z0-9]){text}([^a-z0-9]|$)')"
                          ).rows[0]["n"]
        got = st.search(limit=1000, text="TIMEOUT")
        assert got.rows and sum(r["matching_spans"] for r in got.rows) == n("timeout")
        assert st.search(limit=1000, text="timeo").rows == []  # a part of a word is no word
        with pytest.raises(BadInput):
            st.search(text="?!")


def test_the_index_answers_what_the_scan_answers(store: Path, monkeypatch) -> None:
    with Store(store) as st:
        scanned = {q: st.search(limit=50, text=q) for q in QUERIES}
        assert all(st._text.covered(p.path) is None for p in st.index.partitions())
    report = compact_store(store, now=LATER)
    assert report.files_out == 3
    calls = []
    with Store(store) as st:
        real = st._text.search
        monkeypatch.setattr(st._text, "search", lambda *a: calls.append(a) or real(*a))
        for q in QUERIES:
            got = st.search(limit=50, text=q)
            assert (got.rows, got.truncated) == (scanned[q].rows, scanned[q].truncated), q
        assert all((p.path / TEXT_DIR / "COVERS").exists() for p in st.index.partitions())
    assert calls  # the index was asked


def test_a_file_the_index_does_not_cover_is_scanned(store: Path) -> None:
    compact_store(store, now=LATER)
    late = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(
        spans=[Span(trace_id=b"\x07" * 16, span_id=b"\x01" * 8, name="late",
                    start_time_unix_nano=T0 + 5, end_time_unix_nano=T0 + 9,
                    attributes=[_kv("gen_ai.input.messages",
                                    _messages("user", "zanzibar invoice"))])])])])
    ing = Ingester(store, "acme", writer_id="late")
    ing.add(late)
    ing.flush()
    with Store(store) as st:
        got = st.search(text="zanzibar")
        assert [r["trace_id"] for r in got.rows] == ["07" * 16]


@pytest.mark.parametrize("limit", [3, 8])
def test_an_index_naming_only_the_newest_spans_gives_the_scans_answer(
        store: Path, monkeypatch, limit: int) -> None:
    """A common word: the index returns the newest few matching spans of each hour; the page
    is taken from them when it fills above their oldest, else the hour is scanned."""
    with Store(store) as st:
        before = st.search(limit=limit, text="invoice")
    compact_store(store, now=LATER)
    monkeypatch.setattr(query_mod, "TEXT_CANDIDATES", 2)
    calls = []
    with Store(store) as st:
        real = st._text.search
        monkeypatch.setattr(st._text, "search", lambda *a: calls.append(r := real(*a)) or r)
        after = st.search(limit=limit, text="invoice")
    assert after.rows == before.rows and after.truncated == before.truncated
    assert any(not h.complete for h in calls)  # the partial path ran


def test_words_tantivy_does_not_index_are_scanned_even_in_an_indexed_hour(store: Path) -> None:
    """tantivy's default tokenizer drops tokens of 40 bytes or more: a 40-hex commit sha, or
    a shorter word of multi-byte letters, is found by scanning the indexed file instead."""
    sha = "3f2a9c0d41b7e6f58a9b0c1d2e3f405162738495"
    long_letters = "ünïcödéwörd" * 2  # 22 characters, 40 bytes
    late = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(
        spans=[Span(trace_id=b"\x08" * 16, span_id=b"\x02" * 8, name="review",
                    start_time_unix_nano=T0 + 7, end_time_unix_nano=T0 + 9,
                    attributes=[_kv("gen_ai.input.messages", _messages(
                        "user", f"review commit {sha} {long_letters}"))])])])])
    ing = Ingester(store, "acme", writer_id="sha")
    ing.add(late)
    ing.flush()
    compact_store(store, now=LATER)
    with Store(store) as st:
        assert all((p.path / TEXT_DIR / "COVERS").exists() for p in st.index.partitions())
        for word in (sha, long_letters):
            got = st.search(text=word)
            assert [r["trace_id"] for r in got.rows] == ["08" * 16], word
