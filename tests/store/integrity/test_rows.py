"""Row digests are a stored definition (every integrity log entry carries a root made of
them): `row_digests` must give, for any table, what the definition in rows.py's docstring
gives, computed here row by row in plain Python, and what the first Arrow implementation
(v1, below as it was) gave."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrail.store.ingest import Ingester
from aitrail.store.integrity import rows as row_mod
from aitrail.store.schema import SPANS_SCHEMA

SAMPLES = Path(__file__).resolve().parents[3] / "sample_traces"


def reference_digests(table: pa.Table) -> list[bytes]:
    """The definition, one row at a time."""
    names = sorted(table.column_names)
    cols = {n: table.column(n).to_pylist() for n in names}
    types = {n: table.schema.field(n).type for n in names}
    for n in names:
        if pa.types.is_dictionary(types[n]):
            types[n] = types[n].value_type
    out = []
    for i in range(table.num_rows):
        fixed, variable = b"", []
        for n in names:
            v, t = cols[n][i], types[n]
            if pa.types.is_fixed_size_binary(t):
                fixed += b"\x00" * (t.byte_width + 1) if v is None else b"\x01" + v
            elif v is None:
                variable.append(b"\xfe")
            elif isinstance(v, bool):
                variable.append(b"true" if v else b"false")
            elif isinstance(v, int):
                variable.append(str(v).encode())
            else:
                variable.append(v.encode())
        encoded = fixed + b"".join(b"\xff" + v for v in variable)
        out.append(hashlib.sha256(b"\x00" + encoded).digest())
    return out


def v1_digests(table: pa.Table) -> list[bytes]:
    """The first Arrow implementation: a fill_null per column, then the join."""
    if not table.num_rows:
        return []
    n = table.num_rows
    cols = {name: row_mod._column(table.column(name)) for name in sorted(table.column_names)}

    def variable(col: pa.Array) -> pa.Array:
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            v = col.cast(pa.binary())
        else:
            v = col.cast(pa.string()).cast(pa.binary())
        return pc.fill_null(v, b"\xfe")

    fixed = [row_mod._fixed(c) for c in cols.values() if pa.types.is_fixed_size_binary(c.type)]
    var = [variable(c) for c in cols.values() if not pa.types.is_fixed_size_binary(c.type)]
    head = (pc.binary_join_element_wise(pa.scalar(b"\x00"), *fixed, b"") if fixed
            else pa.array([b"\x00"] * n, pa.binary()))
    rows = pc.binary_join_element_wise(head, *var, b"\xff")
    _, offsets, data = rows.buffers()
    o = memoryview(offsets).cast("i")[rows.offset:rows.offset + n + 1]
    mv = memoryview(data)
    return [hashlib.sha256(mv[a:b]).digest() for a, b in itertools.pairwise(o)]


texts = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["", "a", "é", "\x00"]))
ints = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
uints = st.one_of(st.none(), st.integers(0, 2**64 - 1))


@st.composite
def tables(draw) -> pa.Table:
    n = draw(st.integers(0, 6))

    def col(values, t):
        return pa.array([draw(values) for _ in range(n)], t)

    ids = st.one_of(st.none(), st.binary(min_size=8, max_size=8))
    columns = {
        "trace_id": col(st.one_of(st.none(), st.binary(min_size=16, max_size=16)),
                        pa.binary(16)),
        "span_id": col(ids, pa.binary(8)),
        "name": col(texts, pa.string()),
        "kind": col(st.one_of(st.none(), st.integers(-128, 127)), pa.int8()),
        "start_time_unix_nano": col(uints, pa.uint64()),
        "input_tokens": col(ints, pa.int64()),
        "review_required": col(st.one_of(st.none(), st.booleans()), pa.bool_()),
        "attributes": col(texts, pa.string()),
        "service_name": col(texts, pa.string()).dictionary_encode(),
    }
    keep = draw(st.lists(st.sampled_from(sorted(columns)), min_size=1, unique=True))
    return pa.table({k: columns[k] for k in keep})


@settings(max_examples=300, deadline=None)
@given(tables())
def test_row_digests_follow_the_definition_and_equal_the_first_implementation(table):
    got = row_mod.row_digests(table)
    assert got == reference_digests(table)
    assert got == v1_digests(table)


def test_row_digests_of_stored_sample_spans_equal_the_first_implementation(tmp_path):
    report = Ingester(tmp_path, "t").add_files(sorted(SAMPLES.glob("*/*.json*")))
    assert report.spans
    files = sorted((tmp_path / "spans").rglob("*.parquet"))
    for f in files:
        table = pq.read_table(f, schema=SPANS_SCHEMA)
        assert row_mod.row_digests(table) == v1_digests(table) == reference_digests(table)
