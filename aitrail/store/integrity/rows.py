"""Row digests: what each stored span (or log record) row is bound by.

A row's digest is the RFC 6962 leaf hash of its canonical encoding, SHA-256(0x00 || E):

    E = F_1 ... F_j 0xFF V_1 0xFF V_2 0xFF ... 0xFF V_k

- F: the fixed-size binary columns (trace and span ids) in name order, each as 0x01 and its
  bytes, or 0x00 and as many zero bytes for null: a block of fixed width.
- V: every other column in name order: strings as their UTF-8 bytes, integers as decimal
  text, booleans as true/false, null as the single byte 0xFE.
Valid UTF-8 never contains the bytes 0xFE or 0xFF, so E splits back into its values one way
only, without lengths or escaping (a reader of a bundle must reject strings that are not
valid UTF-8). The encoding is of *logical* values: a row rewritten in another file, Parquet
encoding or row order (compaction) keeps its digest.

A file's row root is the RFC 6962 tree hash over its row digests **sorted bytewise**: a
multiset commitment, so compaction, which reorders rows, can show that a new file holds
exactly the rows of the files it replaces (less the exact duplicates it drops, which have
the same digest as the copy kept).

Cost: _digests.c reads each column's Arrow buffers and hashes every row's encoding as it
writes it, with the GIL released: 2.3 us a span on the benchmark load (SHA-256 itself ~1.1),
against 4.2-5.4 for the Arrow join and casts it replaced. That join, then a hashlib loop that
holds the GIL, is still the path where _digests.c was not compiled (_arrow_digests); tests
hold the two to the same digests. benchmarks/verify.py measures it per span against the
Parquet write itself.
"""

from __future__ import annotations

import hashlib
import itertools

import pyarrow as pa
import pyarrow.compute as pc

from . import merkle

try:
    from . import _digests
except ImportError:  # pragma: no cover - not compiled here (tests/store/test_spanrows.py)
    _digests = None

VERSION = "v1"  # recorded in every log entry next to the root
_NULL = b"\xfe"
_SEP = b"\xff"


def _column(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col


def _fixed(col: pa.Array) -> pa.Array:
    """0x01 + the value, or 0x00 + zeros: every row the same width."""
    width = col.type.byte_width
    tagged = pc.binary_join_element_wise(pa.scalar(b"\x01"), col.cast(pa.binary()), b"")
    return pc.fill_null(tagged, b"\x00" * (width + 1))


def _variable(col: pa.Array) -> pa.Array:
    """The column's values as bytes, nulls left null (the join writes them as 0xFE)."""
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.cast(pa.binary())
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return col.cast(pa.string()).cast(pa.binary())
    raise TypeError(f"no canonical encoding for a {t} column")


# Rows encoded at once: a binary array holds at most 2 GiB (32-bit offsets).
_CHUNK_ROWS = 65_536


def _arrow_digests(table: pa.Table) -> list[bytes]:
    """The reference: one Arrow join of the columns, then hashlib per row. Used where
    _digests.c was not compiled; tests hold the compiled path to it."""
    if table.num_rows > _CHUNK_ROWS:
        return [d for at in range(0, table.num_rows, _CHUNK_ROWS)
                for d in _arrow_digests(table.slice(at, _CHUNK_ROWS))]
    n = table.num_rows
    if not n:
        return []
    cols = {name: _column(table.column(name)) for name in sorted(table.column_names)}
    fixed = [_fixed(c) for c in cols.values() if pa.types.is_fixed_size_binary(c.type)]
    variable = [_variable(c) for c in cols.values() if not pa.types.is_fixed_size_binary(c.type)]
    head = (pc.binary_join_element_wise(pa.scalar(b"\x00"), *fixed, b"") if fixed
            else pa.array([b"\x00"] * n, pa.binary()))  # the RFC 6962 leaf prefix
    # The separator also follows the fixed-width head: harmless, and one join fewer. Nulls
    # become 0xFE in the join itself: a fill_null per column copied every value once more
    # (benchmarks/ingest_grpc.py load: 5.9 -> 5.2 us/span for the digests).
    rows = pc.binary_join_element_wise(head, *variable, _SEP, null_handling="replace",
                                       null_replacement=_NULL)
    _, offsets, data = rows.buffers()
    o = memoryview(offsets).cast("i")[rows.offset:rows.offset + n + 1]
    mv = memoryview(data)
    sha = hashlib.sha256
    return [sha(mv[a:b]).digest() for a, b in itertools.pairwise(o)]


# Column kinds, as _digests.c numbers them.
_FIXED, _STRING, _BOOL, _INT, _UINT = range(5)


def _spec(col: pa.Array) -> tuple:
    """What _digests.rows reads of a column: (kind, width, offset, validity, offsets, data)."""
    t = col.type
    if pa.types.is_dictionary(t):  # decoded by Arrow: no table the store writes has one
        return _spec(col.cast(t.value_type))
    bufs = col.buffers()
    if pa.types.is_fixed_size_binary(t):
        return _FIXED, t.byte_width, col.offset, bufs[0], None, bufs[1]
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _STRING, 4 if pa.types.is_string(t) else 8, col.offset, *bufs
    if pa.types.is_boolean(t):
        return _BOOL, 0, col.offset, bufs[0], None, bufs[1]
    if pa.types.is_integer(t):
        kind = _INT if pa.types.is_signed_integer(t) else _UINT
        return kind, t.bit_width // 8, col.offset, bufs[0], None, bufs[1]
    raise TypeError(f"no canonical encoding for a {t} column")


def _value_type(table: pa.Table, name: str) -> pa.DataType:
    t = table.schema.field(name).type
    return t.value_type if pa.types.is_dictionary(t) else t


def _compiled_digests(table: pa.Table) -> list[bytes]:
    """_digests.c on each record batch: a batch's columns are plain arrays, cut without a
    copy wherever any column's chunks end."""
    names = sorted(table.column_names)
    fixed = [n for n in names if pa.types.is_fixed_size_binary(_value_type(table, n))]
    order = fixed + [n for n in names if n not in fixed]
    if not order:  # no batches to cut: every row is the empty encoding
        return _digests.rows(table.num_rows, [])
    out: list[bytes] = []
    for batch in table.select(order).to_batches():
        if batch.num_rows:
            out += _digests.rows(batch.num_rows, [_spec(c) for c in batch.columns])
    return out


def row_digests(table: pa.Table) -> list[bytes]:
    """Each row's digest, in row order."""
    if _digests is None:
        return _arrow_digests(table)
    return _compiled_digests(table)


def rows_root(digests: list[bytes]) -> bytes:
    """The file's row root: tree hash over its row digests, sorted."""
    return merkle.root(sorted(digests))
