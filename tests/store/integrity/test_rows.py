"""Row digests are a stored definition (every integrity log entry carries a root made of
them): `row_digests` must give, for any table, what the definition in rows.py's docstring
gives, computed here row by row in plain Python, and what the first Arrow implementation
(v1, below as it was) gave. Its two paths, the compiled one (_digests.c, reading Arrow's
buffers) and the Arrow join it falls back to, must agree on every layout of the same values:
sliced arrays, chunked columns, dictionaries."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
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
        assert row_mod._compiled_digests(table) == row_mod._arrow_digests(table)
        # the same rows cut in other places: sliced, in chunks that end at odd rows
        cut = table.slice(1, table.num_rows - 2)
        chunked = pa.Table.from_batches(cut.to_batches(max_chunksize=3))
        assert row_mod._compiled_digests(chunked) == row_mod._arrow_digests(cut)


# -- the compiled path against the Arrow one, on every supported type and layout ------------

_INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(),
              pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
# Longer than _digests.c's scratch buffer (8 KiB) and its direct-hashing threshold (256 B)
_BIG = ["x" * 300, "é" * 5000, "y" * 9000]


def _values(t: pa.DataType):
    if pa.types.is_integer(t):
        lo, hi = ((-(2 ** (t.bit_width - 1)), 2 ** (t.bit_width - 1) - 1)
                  if pa.types.is_signed_integer(t) else (0, 2**t.bit_width - 1))
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, -1 if lo else 1]))
    if pa.types.is_boolean(t):
        return st.booleans()
    if pa.types.is_fixed_size_binary(t):
        return st.binary(min_size=t.byte_width, max_size=t.byte_width)
    return st.one_of(st.text(max_size=20), st.sampled_from(["", "\x00", "\uffff", *_BIG]))


_TYPES = [*_INT_TYPES, pa.bool_(), pa.string(), pa.large_string(), pa.binary(1),
          pa.binary(8), pa.binary(16), pa.binary(300), pa.dictionary(pa.int8(), pa.string()),
          pa.dictionary(pa.uint32(), pa.large_string())]


@st.composite
def laid_out(draw, t: pa.DataType, n: int) -> pa.ChunkedArray:
    """n values of type t (some null), as an array sliced out of a longer one (any bit
    offset) and cut into chunks."""
    value_type = t.value_type if pa.types.is_dictionary(t) else t
    values = st.one_of(st.none(), _values(value_type))
    if draw(st.booleans()):
        values = _values(value_type)  # no nulls: Arrow may leave out the validity bitmap
    before, after = draw(st.integers(0, 19)), draw(st.integers(0, 3))
    full = pa.array([draw(values) for _ in range(before + n + after)], value_type)
    if pa.types.is_dictionary(t):
        full = full.dictionary_encode().cast(t)
    arr = full.slice(before, n)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    return pa.chunked_array([arr.slice(a, b - a) for a, b in
                             itertools.pairwise([0, *cuts, n])], t)


@st.composite
def any_tables(draw) -> pa.Table:
    n = draw(st.integers(0, 12))
    types = draw(st.lists(st.sampled_from(_TYPES), min_size=1, max_size=8))
    return pa.table({f"c{i}": draw(laid_out(t, n)) for i, t in enumerate(types)})


@settings(max_examples=400, deadline=None)
@given(any_tables(), st.integers(0, 5))
def test_compiled_row_digests_equal_the_arrow_ones_on_any_layout(table, cut):
    want = reference_digests(table)
    assert row_mod._arrow_digests(table) == want
    assert row_mod._compiled_digests(table) == want
    part = table.slice(min(cut, table.num_rows))  # a table slice: offsets in every chunk
    assert row_mod._compiled_digests(part) == want[min(cut, table.num_rows):]


def test_compiled_row_digests_take_more_rows_than_the_arrow_join_does_at_once():
    n = row_mod._CHUNK_ROWS + 3
    table = pa.table({"id": pa.array([i.to_bytes(8, "big") for i in range(n)], pa.binary(8)),
                      "n": pa.array(range(-n, 0), pa.int64()),
                      "s": pa.array([str(i) if i % 3 else None for i in range(n)])})
    assert row_mod._compiled_digests(table) == row_mod._arrow_digests(table)


def test_row_digests_of_a_table_without_columns_are_the_empty_encoding():
    table = pa.table({"a": [1, 2]}).select([])
    assert row_mod._compiled_digests(table) == row_mod._arrow_digests(table) == (
        [hashlib.sha256(b"\x00").digest()] * 2)


@pytest.mark.parametrize("t", [pa.float64(), pa.binary(), pa.large_binary(),
                               pa.list_(pa.int8()), pa.string_view(), pa.date32(),
                               pa.dictionary(pa.int8(), pa.float32())])
def test_row_digests_refuse_a_column_without_canonical_encoding(t):
    table = pa.table({"a": pa.array([1], pa.int8()), "b": pa.nulls(1, t)})
    for digests in (row_mod._compiled_digests, row_mod._arrow_digests):
        with pytest.raises(TypeError, match="no canonical encoding"):
            digests(table)


def test_row_digests_fall_back_to_the_arrow_join_where_the_extension_is_not_built(
        monkeypatch):
    table = pa.table({"s": ["a", None], "n": pa.array([-1, 2**40], pa.int64())})
    monkeypatch.setattr(row_mod, "_digests", None)
    assert row_mod.row_digests(table) == reference_digests(table)
