"""`Store.trace` builds the `spans` columns in Python: they must equal what the view gives,
for every sample trace and for awkward values (lifted text with control characters, unknown
kinds, reversed or missing times); rows it cannot reproduce go to the view."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitrail.store.query import Store
from aitrail.store.trace_rows import spans_rows


@pytest.fixture(scope="module")
def store(sample_store):
    with Store(sample_store) as s:
        yield s


def _trace_ids(store: Store) -> list[str]:
    return [r["t"] for r in store.sql("select distinct lower(hex(trace_id)) as t from _spans "
                                      "order by t", limit=None).rows]


def test_trace_rows_equal_the_spans_view_for_every_sample_trace(store) -> None:
    built = 0
    for tid in _trace_ids(store):
        table = store._trace_table(tid, None)
        view = store._trace_view(table)
        got = store.trace(tid)
        assert (got.columns, got.rows, got.json_columns) == \
               (view.columns, view.rows, view.json_columns)
        built += spans_rows(table, view.columns) is not None
    assert built == len(_trace_ids(store))  # the Python path answered every one


def test_a_trace_fetch_reads_only_the_stored_columns_the_view_needs(store) -> None:
    for tid in _trace_ids(store):
        every = store._trace_table(tid, None)
        some = store._trace_table(tid, None, store._trace_stored)
        assert {"flags", "trace_state", "scope_schema_url"}.isdisjoint(some.column_names)
        assert some.num_columns < every.num_columns
        # DuckDB would refuse a view over a table without a column it reads.
        assert store._trace_view(some) == store._trace_view(every)


def _one_row(store: Store) -> pa.Table:
    tid = next(t for t in _trace_ids(store)
               if store._trace_table(t, None)["input_messages"].null_count
               < store._trace_table(t, None).num_rows)
    table = store._trace_table(tid, None)
    row = next(i for i, v in enumerate(table["input_messages"].to_pylist()) if v)
    return table.slice(row, 1)


def _set(table: pa.Table, name: str, value) -> pa.Table:
    i = table.schema.get_field_index(name)
    field = table.schema.field(i)
    return table.set_column(i, field, pa.array([value], field.type))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
       user=st.one_of(st.none(), st.text(alphabet=st.characters(codec="utf-8"), max_size=30)),
       kind=st.one_of(st.none(), st.integers(-128, 127)),
       status=st.one_of(st.none(), st.integers(-128, 127)),
       start=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
       end=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_awkward_values_come_out_as_the_view_gives_them(store, text, user, kind, status,
                                                        start, end) -> None:
    table = _one_row(store)
    table = _set(table, "input_messages", text)
    table = _set(table, "user_id", user)
    table = _set(table, "attributes", '{"gen_ai.input.messages":{"$col":"input_messages"},'
                                      '"enduser.id":{"$col":"user_id"},"n":1}')
    table = _set(table, "kind", kind)
    table = _set(table, "status_code", status)
    table = _set(table, "start_time_unix_nano", start)
    table = _set(table, "end_time_unix_nano", end)
    view = store._trace_view(table)
    rows = spans_rows(table, view.columns)
    if rows is not None:
        assert rows == view.rows
    escaped_upper = set("\x0b\x0e\x0f\x1a\x1b\x1c\x1d\x1e\x1f")
    if not escaped_upper & set(text + (user or "")) and (
            start is None or end is None or abs(end - start) < 2**53):
        assert rows is not None  # only the few documented cases go to the view


def test_a_view_column_it_does_not_know_goes_to_the_view(store) -> None:
    table = store._trace_table(_trace_ids(store)[0], None)
    columns = store._trace_view(table).columns
    assert spans_rows(table, columns) is not None
    assert spans_rows(table, [*columns, "something_new"]) is None
