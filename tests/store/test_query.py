"""The query API: search filters, facets, honest truncation, parameters never become SQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aitrail.store.errors import BadInput, NotFound, QueryError
from aitrail.store.query import Store


@pytest.fixture()
def store(sample_store):
    with Store(sample_store) as s:
        yield s


def test_search_truncates_honestly_at_the_limit(store):
    total = store.sql("select count(distinct trace_id) as n from spans").rows[0]["n"]
    assert total > 3
    page = store.search(limit=3)
    assert len(page.rows) == 3 and page.truncated
    everything = store.search(limit=total)
    assert len(everything.rows) == total and not everything.truncated
    starts = [r["start_time"] for r in everything.rows]
    assert starts == sorted(starts, reverse=True)


def test_search_filters_combine(store):
    rows = store.search(service="coding-agent", model="claude-sonnet-4-5").rows
    assert rows and all(r["services"] == ["coding-agent"] for r in rows)
    assert store.search(service="coding-agent", verdict="deny").rows == []


def test_search_time_window_is_half_open(store):
    first = store.sql("select min(start_time) as t from spans").rows[0]["t"]
    assert store.search(until=first).rows == []
    assert store.search(since=first, until=datetime(2100, 1, 1, tzinfo=UTC)).rows


def test_free_text_is_a_value_not_sql(store):
    assert store.search(text="'; drop table x; --").rows == []
    with pytest.raises(BadInput, match="no words"):  # words are searched, not patterns
        store.search(text="%")
    hits = store.search(text="zendesk:ticket/77120").rows
    assert len(hits) == 2  # the leaking reply and the other customer's reply


def test_unknown_filter_is_refused(store):
    with pytest.raises(BadInput, match="unknown filter"):
        store.search(colour="red")


def test_facets_agree_with_sql(store):
    facets = store.facets(service="support-agent")
    counts = {r["ai_kind"]: r["n"] for r in store.sql(
        "select ai_kind, count(*) as n from spans where service_name = 'support-agent' "
        "and ai_kind is not null group by 1").rows}
    assert dict(facets["ai_kind"]) == counts
    assert facets["service_name"] == [("support-agent", sum(
        n for _, n in store.facets()["service_name"] if _ == "support-agent"))]


def test_trace_by_id_returns_every_span_in_time_order(store):
    tid = store.sql("select trace_id from spans where change_id = "
                    "'chg-oncall-restart-payments-1107' limit 1").rows[0]["trace_id"]
    rows = store.trace(tid).rows
    assert len(rows) == store.sql(f"select count(*) as n from spans where trace_id = '{tid}'"
                                  ).rows[0]["n"]
    assert [r["start_time"] for r in rows] == sorted(r["start_time"] for r in rows)
    with pytest.raises(NotFound):
        store.trace("f" * 32)


def test_sql_reports_truncation_and_stops_runaway_queries(store):
    res = store.sql("select * from range(10)", limit=5)
    assert len(res.rows) == 5 and res.truncated
    with pytest.raises(QueryError, match="longer than"):
        store.sql("select count(*) from range(1000000000000) a", timeout_s=0.5)
