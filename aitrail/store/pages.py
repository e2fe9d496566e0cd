"""One trace's rows read from the Parquet pages that hold them, not from whole row groups.

pyarrow decodes whole row groups: ~10-14 ms for the 4,096 rows of ~60 columns around a trace
of 6 (benchmarks/query.py). Compaction writes pages of exactly PAGE_ROWS rows in every column
(compact.py), so row r of a row group sits in page r // PAGE_ROWS of every column. Where that
holds, compaction records each page's place, read from the file's standard offset index, in
the trace id sidecar (`PageMap`, trace_index.py). A fetch then copies the pages holding the
trace, and each column's dictionary page, into a small Parquet file in memory with a footer
written here, and pyarrow decodes only those: ~2.5 ms for 256-row pages (~3.1 ms for 512,
on the 10M store, p50). A row group whose pages do not line up
(a column whose dictionary outgrew its page and fell back to plain, or one page over the size
limit) has no place in the map, and its trace is read the old way (TraceReader).

Only the little of Thrift's compact protocol that Parquet metadata uses is here: decoding the
footer and offset indexes at compaction, encoding the small file's footer at fetch.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

PAGE_ROWS = 256
_MAGIC = b"PAR1"
# Thrift compact types.
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = \
    range(1, 13)
# parquet.thrift enums, by the names pyarrow gives them.
_TYPES = {"BOOLEAN": 0, "INT32": 1, "INT64": 2, "INT96": 3, "FLOAT": 4, "DOUBLE": 5,
          "BYTE_ARRAY": 6, "FIXED_LEN_BYTE_ARRAY": 7}
_ENCODINGS = {"PLAIN": 0, "PLAIN_DICTIONARY": 2, "RLE": 3, "BIT_PACKED": 4,
              "DELTA_BINARY_PACKED": 5, "DELTA_LENGTH_BYTE_ARRAY": 6, "DELTA_BYTE_ARRAY": 7,
              "RLE_DICTIONARY": 8, "BYTE_STREAM_SPLIT": 9}
_CODECS = {"UNCOMPRESSED": 0, "SNAPPY": 1, "GZIP": 2, "LZO": 3, "BROTLI": 4, "LZ4": 5,
           "ZSTD": 6, "LZ4_RAW": 7}


# -- Thrift compact protocol -----------------------------------------------------------------

def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = out = 0
    while True:
        x = b[i]
        i += 1
        out |= (x & 0x7F) << shift
        if x < 0x80:
            return out, i
        shift += 7


def _value(b: bytes, i: int, t: int) -> tuple[object, int]:
    if t in (_I16, _I32, _I64):
        n, i = _varint(b, i)
        return (n >> 1) ^ -(n & 1), i
    if t == _BINARY:
        n, i = _varint(b, i)
        return b[i:i + n], i + n
    if t == _STRUCT:
        return read_struct(b, i)
    if t in (_LIST, _SET):
        head = b[i]
        i += 1
        n, et = head >> 4, head & 0x0F
        if n == 15:
            n, i = _varint(b, i)
        items = []
        for _ in range(n):
            if et in (_TRUE, _FALSE):  # a list's booleans are one byte each
                items.append(b[i] == 1)
                i += 1
            else:
                v, i = _value(b, i, et)
                items.append(v)
        return items, i
    if t == _BYTE:
        return b[i], i + 1
    if t == _DOUBLE:
        return struct.unpack_from("<d", b, i)[0], i + 8
    if t == _MAP:
        n, i = _varint(b, i)
        if not n:
            return {}, i
        kt, vt = b[i] >> 4, b[i] & 0x0F
        i += 1
        out = {}
        for _ in range(n):
            k, i = _value(b, i, kt)
            out[k], i = _value(b, i, vt)
        return out, i
    raise ValueError(f"unknown thrift type {t}")


def _field(b: bytes, i: int, last: int) -> tuple[int, int, int]:
    """The next field header: (field id, type, position after it); type 0 at the end."""
    head = b[i]
    i += 1
    if head == 0:
        return 0, 0, i
    t, delta = head & 0x0F, head >> 4
    if delta:
        return last + delta, t, i
    n, i = _varint(b, i)
    return (n >> 1) ^ -(n & 1), t, i


def read_struct(b: bytes, i: int = 0) -> tuple[dict[int, object], int]:
    """A struct as {field id: value} (booleans as True/False), and the position after it."""
    out: dict[int, object] = {}
    fid = 0
    while True:
        fid, t, i = _field(b, i, fid)
        if t == 0:
            return out, i
        if t in (_TRUE, _FALSE):
            out[fid] = t == _TRUE
        else:
            out[fid], i = _value(b, i, t)


def _uvarint(n: int) -> bytes:
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:  # most sizes and offsets in a small file: two bytes
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_ONE_BYTE = [bytes([n]) for n in range(0x80)]


def _int(fid_delta: int, t: int, v: int) -> bytes:
    return bytes([(fid_delta << 4) | t]) + _uvarint((v << 1) ^ (v >> 63))


_META = bytes([0x10 | _STRUCT])  # ColumnChunk field 3: its ColumnMetaData
_NEXT_I64 = bytes([0x10 | _I64])  # the field after the last one written, an i64
_NEXT2_I64 = bytes([0x20 | _I64])  # the one after that


def _list_head(fid_delta: int, et: int, n: int) -> bytes:
    head = bytes([(n << 4) | et]) if n < 15 else bytes([0xF0 | et]) + _uvarint(n)
    return bytes([(fid_delta << 4) | _LIST]) + head


# -- the page map (written at compaction) ----------------------------------------------------

@dataclass
class PageMap:
    """Where each page-sized cell of rows is, in every column. `cells`: (first row of the
    file, rows, row group) in row order, only for row groups whose pages line up; `pages`:
    per cell, per column, (offset, size) of its data page; `dicts`: per row group, per
    column, (offset, size) of its dictionary page, size 0 if none."""
    rows_per_page: int
    columns: int
    cells: list[tuple[int, int, int]]
    pages: list[list[tuple[int, int]]]
    dicts: list[list[tuple[int, int]]]

    def cell(self, k: int) -> tuple[int, int, int]:
        return self.cells[k]

    def page_places(self, k: int) -> list[tuple[int, int]]:
        return self.pages[k]

    def dictionary_places(self, g: int) -> list[tuple[int, int]]:
        return self.dicts[g]


def _footer(f) -> bytes:
    f.seek(-8, 2)
    tail = f.read(8)
    if tail[4:] != _MAGIC:
        raise ValueError("not a Parquet file")
    n = struct.unpack("<I", tail[:4])[0]
    f.seek(-8 - n, 2)
    return f.read(n)


def page_map(path, rows_per_page: int = PAGE_ROWS) -> PageMap:
    """The page map of a file written with `rows_per_page` rows per page and a page index."""
    with open(path, "rb") as f:
        md, _ = read_struct(_footer(f))
        cells, pages, dicts = [], [], []
        first = 0
        for g, rg in enumerate(md[4]):
            n = rg[3]
            chunks = rg[1]
            count = -(-n // rows_per_page)
            per_col, dict_pages, ok = [], [], True
            for cc in chunks:
                meta = cc.get(3)
                if meta is None or 4 not in cc or 5 not in cc:
                    ok = False  # no offset index (or metadata elsewhere)
                    break
                f.seek(cc[4])
                index, _ = read_struct(f.read(cc[5]))
                locs = index[1]
                if len(locs) != count or any(
                        loc[3] != k * rows_per_page for k, loc in enumerate(locs)):
                    ok = False
                    break
                d = meta.get(11)
                dict_pages.append((d, locs[0][1] - d) if d is not None else (0, 0))
                per_col.append([(loc[1], loc[2]) for loc in locs])
            dicts.append(dict_pages if ok else [])
            if ok:
                for k in range(count):
                    cells.append((first + k * rows_per_page,
                                  min(rows_per_page, n - k * rows_per_page), g))
                    pages.append([col[k] for col in per_col])
            first += n
        columns = len(md[4][0][1]) if md[4] else 0
        return PageMap(rows_per_page, columns, cells, pages, dicts)


# -- reading (at fetch) ------------------------------------------------------------------------

class _FileLayout:
    """What a small file's footer needs of one file, computed once: its schema (copied from
    the footer) and, per row group and column, the fixed head of the column metadata (with
    the field header of the ColumnChunk's metadata)."""

    def __init__(self, path, md: pq.FileMetaData) -> None:
        with open(path, "rb") as f:
            footer = _footer(f)
        # Fields 1 (version) and 2 (schema) open every FileMetaData: copied as they are.
        fid, i = 0, 0
        while True:
            fid, t, j = _field(footer, i, fid)
            if fid > 2 or t == 0:
                break
            _, i = _value(footer, j, t)
        self.head = footer[:i]
        self.md = md
        self._columns: dict[int, list[bytes]] = {}

    def columns(self, g: int) -> list[bytes]:
        hit = self._columns.get(g)
        if hit is None:
            hit = []
            rg = self.md.row_group(g)
            for c in range(rg.num_columns):
                col = rg.column(c)
                path = col.path_in_schema.split(".")
                encodings = [_ENCODINGS[e] for e in col.encodings]
                hit.append(
                    _META + _int(1, _I32, _TYPES[col.physical_type])
                    + _list_head(1, _I32, len(encodings))
                    + b"".join(_uvarint((e << 1) ^ (e >> 63)) for e in encodings)
                    + _list_head(1, _BINARY, len(path))
                    + b"".join(_uvarint(len(p)) + p for p in (s.encode() for s in path))
                    + _int(1, _I32, _CODECS[col.compression]))
            self._columns[g] = hit
        return hit


def read_rows(path, md: pq.FileMetaData, pm, cell_range: tuple[int, int],
              first: int, count: int, layouts: dict,
              columns: Sequence[str] | None = None) -> pa.Table:
    """Rows [first, first + count) of the file at `path` (only `columns`, if given), from
    cells cell_range[0] .. cell_range[1] - 1 of its page map `pm` (a PageMap, or the
    sidecar's view of one), which are consecutive and cover those rows. `layouts` caches
    what is read once per file."""
    layout = layouts.get(path)
    if layout is None:
        layout = layouts[path] = _FileLayout(path, md)
    k0, k1 = cell_range
    cells = [pm.cell(k) for k in range(k0, k1)]
    out = [_MAGIC]
    pos = len(_MAGIC)
    groups: list[bytes] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        k = k0
        while k < k1:
            g = cells[k - k0][2]
            end = k
            while end < k1 and cells[end - k0][2] == g:
                end += 1
            rows_field = _int(1, _I64, sum(cells[j - k0][1] for j in range(k, end)))
            firsts = pm.page_places(k)
            # A column's pages are contiguous: up to the last one's end.
            lasts = pm.page_places(end - 1) if end - 1 > k else firsts
            chunks = []
            for head, (d_off, d_size), (p_off, _), (last_off, last_size) in zip(
                    layout.columns(g), pm.dictionary_places(g), firsts, lasts, strict=True):
                size = last_off + last_size - p_off
                if d_size and d_off + d_size == p_off:  # the row group's first page
                    out.append(os.pread(fd, d_size + size, d_off))
                else:
                    if d_size:
                        out.append(os.pread(fd, d_size, d_off))
                    out.append(os.pread(fd, size, p_off))
                # ColumnChunk: file_offset, meta_data {type .. codec, num_values,
                # total_uncompressed_size, total_compressed_size, data_page_offset,
                # dictionary_page_offset}. Sizes and offsets are never negative: zigzag is
                # a shift.
                start = _uvarint(pos << 1)
                total = _uvarint((d_size + size) << 1)
                chunks += (_NEXT2_I64, start, head, rows_field, _NEXT_I64, total, _NEXT_I64,
                           total, _NEXT2_I64, _uvarint((pos + d_size) << 1))
                if d_size:
                    chunks += (_NEXT2_I64, start)
                chunks.append(b"\x00\x00")
                pos += d_size + size
            groups.append(_list_head(1, _STRUCT, len(firsts)) + b"".join(chunks)
                          + _int(1, _I64, pos) + rows_field + b"\x00")
            k = end
    finally:
        os.close(fd)
    footer = b"".join((layout.head, _int(1, _I64, sum(n for _, n, _ in cells)),
                       _list_head(1, _STRUCT, len(groups)), *groups, b"\x00"))
    out += [footer, struct.pack("<I", len(footer)), _MAGIC]
    # One thread: for a page's worth of rows, handing columns to the pool costs more than it
    # saves (2.9 vs 3.2 ms for a 512-row file of 63 columns; more on a busy machine).
    table = pq.ParquetFile(pa.BufferReader(b"".join(out)), pre_buffer=False).read(
        columns, use_threads=False)
    return table.slice(first - cells[0][0], count)
