"""Pivots: every span that shares a value with this one."""

from __future__ import annotations

import pytest

from aitrail.store.errors import BadInput
from aitrail.store.pivots import Pivot, pivots_of, spans_sharing
from aitrail.store.query import Store


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
