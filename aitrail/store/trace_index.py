"""Trace id -> Parquet files, without reading Parquet footers.

Every spans file `X.parquet` gets a sidecar `_X.tids` in the same partition directory: the
sorted distinct 16-byte trace ids it holds. Looking a trace up is a binary search per sidecar
(mmap'd, a few microseconds each), so a trace is found without knowing its hour and DuckDB
opens only the file(s) that hold it (performance.md: footers are what makes small files slow).

A sidecar is written (fsync'd, renamed) before its Parquet file is published, and compaction
swaps whole partition directories (compact.py), so a file and its sidecar always agree. A file
without a valid sidecar (older stores, a damaged sidecar) is simply always a candidate: the
index can make a lookup slower, never wrong. The leading `_` keeps Hive readers (Spark, Trino,
DuckDB globs on `*.parquet`) from treating sidecars as data.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .pages import PageMap, read_rows

MAGIC = b"ATTIDS01"  # ids only
MAGIC_ROWS = b"ATTIDS02"  # ids, where each trace's rows start, and a page map
_HEADER = struct.Struct("<8sQ")  # magic, count
_PAGES = struct.Struct("<IIIII")  # rows, rows per page, columns, cells, row groups
_CELL = struct.Struct("<III")  # first row, rows, row group
_PLACE = struct.Struct("<QI")  # offset, size
ID_LEN = 16
FENCE = 64  # ids per run of the map between two ids kept in memory (IdSet)
_SETTLE_NS = 2_000_000_000


def sidecar_path(parquet: Path) -> Path:
    return parquet.with_name(f"_{parquet.stem}.tids")


def write_sidecar(parquet: Path, trace_ids: pa.ChunkedArray | pa.Array,
                  pages: PageMap | None = None, into: Path | None = None) -> Path:
    """Write the sorted distinct trace ids of a file about to be published at `parquet`
    (into its directory, or `into` another one until it is). `trace_ids` is the file's
    trace_id column in row order: when it is sorted (every spans file is), the sidecar also
    says where each trace's rows start, and `pages` where the rows are (pages.py)."""
    column = trace_ids.drop_null()
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], pa.binary(16))
    ordered = len(column) == len(trace_ids) and (len(column) < 2 or pc.all(pc.greater_equal(
        column.slice(1), column.slice(0, len(column) - 1))).as_py())
    starts = None
    if ordered:
        if len(column):
            change = pc.not_equal(column.slice(1), column.slice(0, len(column) - 1))
            starts = [0] + [i + 1 for i in pc.indices_nonzero(change).to_pylist()]
        else:
            starts = []
        values = column.take(pa.array(starts, pa.int64())).to_pylist()
        keep = [i for i, v in enumerate(values) if len(v) == ID_LEN]
        values, starts = [values[i] for i in keep], [starts[i] for i in keep]
    else:
        values = sorted(v for v in pc.unique(column).to_pylist() if len(v) == ID_LEN)
    dest = sidecar_path(parquet)
    if into is not None:
        dest = into / dest.name
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(tmp, "wb") as f:
        if starts is None:
            f.write(_HEADER.pack(MAGIC, len(values)))
            f.write(b"".join(values))
        else:
            f.write(_HEADER.pack(MAGIC_ROWS, len(values)))
            f.write(b"".join(values))
            f.write(struct.pack(f"<{len(starts)}I", *starts))
            f.write(_encode_pages(len(trace_ids), pages))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    return dest


def _encode_pages(rows: int, pm: PageMap | None) -> bytes:
    if pm is None or not pm.cells:
        return _PAGES.pack(rows, 0, 0, 0, 0)
    out = [_PAGES.pack(rows, pm.rows_per_page, pm.columns, len(pm.cells), len(pm.dicts))]
    out += [_CELL.pack(*cell) for cell in pm.cells]
    out += [_PLACE.pack(*p) for cell in pm.pages for p in cell]
    out += [_PLACE.pack(*d) for g in pm.dicts for d in (g or [(0, 0)] * pm.columns)]
    return b"".join(out)


class SidecarPages:
    """A sidecar's page map, read in place (the same questions as pages.PageMap)."""

    def __init__(self, mm: mmap.mmap, at: int, columns: int, cells: int, groups: int,
                 rows_per_page: int) -> None:
        self._mm = mm
        self.rows_per_page = rows_per_page
        self.columns = columns
        self._cells = at
        self._pages = at + cells * _CELL.size
        self._dicts = self._pages + cells * columns * _PLACE.size
        self.count = cells
        self._row = struct.Struct("<" + "QI" * columns)  # one (offset, size) per column

    def cell(self, k: int) -> tuple[int, int, int]:
        return _CELL.unpack_from(self._mm, self._cells + k * _CELL.size)

    def page_places(self, k: int) -> list[tuple[int, int]]:
        return self._places(self._pages + k * self.columns * _PLACE.size)

    def dictionary_places(self, g: int) -> list[tuple[int, int]]:
        return self._places(self._dicts + g * self.columns * _PLACE.size)

    def _places(self, at: int) -> list[tuple[int, int]]:
        flat = self._row.unpack_from(self._mm, at)
        return list(zip(flat[::2], flat[1::2], strict=True))

    def find(self, row: int) -> int:
        """The cell holding `row`, or -1."""
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            if self.cell(mid)[0] <= row:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            return -1
        first, n, _ = self.cell(lo - 1)
        return lo - 1 if row < first + n else -1


class IdSet:
    """A sidecar, mmap'd: membership by binary search over fixed-width ids. Every
    FENCE-th id is also kept in memory: a lookup bisects that list (in C), then finds the id
    in the one run of FENCE ids of the map it falls in: ~2 us per sidecar, where a bisect
    calling __getitem__ for each of ~17 probes took ~6 us (/work/q10m: 25 sidecars of ~70k ids)."""

    def __init__(self, path: Path | str) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _HEADER.size:
                raise ValueError("short sidecar")
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        magic, count = _HEADER.unpack_from(self._mm, 0)
        self._n = count
        self._starts = self.pages = None
        self._rows = 0
        ids_end = _HEADER.size + count * ID_LEN
        ok = magic == MAGIC and size == ids_end
        if magic == MAGIC_ROWS and size >= ids_end + count * 4 + _PAGES.size:
            self._starts = ids_end
            at = ids_end + count * 4
            self._rows, per_page, columns, cells, groups = _PAGES.unpack_from(self._mm, at)
            at += _PAGES.size
            ok = size == at + cells * _CELL.size + (cells + groups) * columns * _PLACE.size
            if ok and cells:
                self.pages = SidecarPages(self._mm, at, columns, cells, groups, per_page)
        if not ok:
            self._mm.close()
            raise ValueError("not a complete trace id sidecar")
        self._ids_end = ids_end
        self._fence = [self._mm[at:at + ID_LEN]
                       for at in range(_HEADER.size, ids_end, FENCE * ID_LEN)]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> bytes:
        at = _HEADER.size + i * ID_LEN
        return self._mm[at:at + ID_LEN]

    def index(self, tid: bytes) -> int:
        """The position of `tid` among the sorted ids; -1 if not there."""
        k = bisect_right(self._fence, tid)
        if k == 0 or len(tid) != ID_LEN:
            return -1
        lo = _HEADER.size + (k - 1) * FENCE * ID_LEN
        hi = min(lo + FENCE * ID_LEN, self._ids_end)
        at = self._mm.find(tid, lo, hi)
        while at >= 0 and (at - _HEADER.size) % ID_LEN:  # found across two ids
            at = self._mm.find(tid, at + 1, hi)
        return -1 if at < 0 else (at - _HEADER.size) // ID_LEN

    def __contains__(self, tid: bytes) -> bool:
        return self.index(tid) >= 0

    def rows(self, tid: bytes) -> tuple[int, int] | None:
        """The rows [first, end) of the trace in the file; None if not said or not there."""
        if self._starts is None:
            return None
        i = self.index(tid)
        if i < 0:
            return None
        first = struct.unpack_from("<I", self._mm, self._starts + 4 * i)[0]
        end = (struct.unpack_from("<I", self._mm, self._starts + 4 * (i + 1))[0]
               if i + 1 < self._n else self._rows)
        return first, end

    def close(self) -> None:
        self._mm.close()


@dataclass
class Partition:
    tenant: str
    date: str  # YYYY-MM-DD
    hour: int
    path: Path
    files: list[tuple[Path, IdSet | None]]  # Parquet files and their sidecars


def _newest_first(p: Partition) -> tuple[str, int, str]:
    return p.date, p.hour, p.tenant


class TraceIndex:
    """The store's partitions and files, cached per directory (inode + mtime), so repeated
    lookups from a long-lived reader (the TUI) cost a stat call per directory (~0.1 ms for
    the 29 directories of a 25-hour store). A listing's Partition is built once and shared
    by every call until its directory changes: callers must not change it. Replaced sidecars
    are unmapped when their listing is dropped (mmap closes with its last reference)."""

    def __init__(self, dataset_dir: Path) -> None:
        self.base = Path(dataset_dir)
        self._base = str(self.base)  # os.stat and scandir take str faster than Path
        self._cache: dict[str, tuple[tuple[int, int], object]] = {}
        # Per directory, sidecars by (name, inode): a sidecar is replaced, never changed.
        self._idsets: dict[str, dict[tuple[str, int], IdSet | None]] = {}

    def _cached(self, path: str, build):
        """build(sorted entries of `path`), cached while the directory is unchanged; None
        if there is no such directory."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._cache.pop(path, None)
            return None
        key = (st.st_ino, st.st_mtime_ns)
        hit = self._cache.get(path)
        # mtime has a coarse clock: a directory changed in the last seconds may change again
        # without a new mtime, so it is listed again.
        if hit is not None and hit[0] == key and time.time_ns() - key[1] > _SETTLE_NS:
            return hit[1]
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
            value = build(entries)
        except FileNotFoundError:  # swapped or removed while listing
            self._cache.pop(path, None)
            return None
        self._cache[path] = (key, value)
        return value

    def _subdirs(self, path: str, prefix: str) -> list[str]:
        return self._cached(path, lambda es: [e.name for e in es
                                              if e.name.startswith(prefix)]) or []

    def _partition(self, path: str, tenant: str, date: str, hour: int) -> Partition | None:
        def build(entries: list[os.DirEntry]) -> Partition:
            old = self._idsets.get(path, {})
            new: dict[tuple[str, int], IdSet | None] = {}
            for e in entries:
                if e.name.endswith(".tids") and e.name.startswith("_"):
                    key = (e.name, e.inode())
                    if key in old:
                        new[key] = old[key]
                        continue
                    try:
                        new[key] = IdSet(e.path)
                    except (OSError, ValueError):
                        new[key] = None
            self._idsets[path] = new
            by_name = {name: ids for (name, _), ids in new.items()}
            return Partition(tenant, date, hour, Path(path), [
                (Path(e.path), by_name.get(f"_{e.name[:-len('.parquet')]}.tids"))
                for e in entries
                if e.name.endswith(".parquet") and not e.name.startswith((".", "_"))])
        return self._cached(path, build)

    def partitions(self, tenant: str | None = None) -> list[Partition]:
        """Every tenant-hour partition, newest first."""
        out = []
        tenants = [f"tenant={tenant}"] if tenant else self._subdirs(self._base, "tenant=")
        for t in tenants:
            tdir = f"{self._base}/{t}"
            for d in self._subdirs(tdir, "date="):
                ddir = f"{tdir}/{d}"
                for h in self._subdirs(ddir, "hour="):
                    try:
                        hour = int(h[5:])
                    except ValueError:
                        continue
                    part = self._partition(f"{ddir}/{h}", t[7:], d[5:], hour)
                    if part is not None:
                        out.append(part)
        out.sort(key=_newest_first, reverse=True)
        return out

    def files_for(self, trace_id: bytes, tenant: str | None = None) -> list[Path]:
        """Files that may hold spans of the trace: those whose sidecar has it, and those
        without a sidecar."""
        return [path for path, _ in self.locate(trace_id, tenant)]

    def locate(self, trace_id: bytes, tenant: str | None = None
               ) -> list[tuple[Path, IdSet | None]]:
        """`files_for`, with each file's sidecar (None: no valid sidecar)."""
        return [(path, ids) for part in self.partitions(tenant) for path, ids in part.files
                if ids is None or trace_id in ids]


class TraceReader:
    """Reads one trace's rows straight from the pages, or row groups, that hold them.

    Files are sorted by trace id. Where the sidecar says which rows are the trace's and where
    their pages are (compacted files), only those pages are decoded (pages.py). Otherwise
    each row group covers an id range: the footer's min/max (cached per file; files are never
    rewritten in place) name the row group(s) to read, and only those are decompressed.
    DuckDB reads the filter column of every row group instead.
    """

    def __init__(self) -> None:
        self._meta: dict[Path, tuple[pq.FileMetaData, list[bytes], list[bytes]]] = {}
        self._layouts: dict = {}  # pages.read_rows' per-file cache
        # Per file, per column selection, its Arrow schema.
        self._schemas: dict[Path, dict[tuple[str, ...] | None, pa.Schema]] = {}

    def _ranges(self, path: Path) -> tuple[pq.FileMetaData, list[bytes], list[bytes]]:
        hit = self._meta.get(path)
        if hit is None:
            md = pq.read_metadata(path)
            col = md.schema.to_arrow_schema().get_field_index("trace_id")
            lows, highs = [], []
            for g in range(md.num_row_groups):
                st = md.row_group(g).column(col).statistics
                ok = st is not None and st.has_min_max
                lows.append(st.min if ok else b"")
                highs.append(st.max if ok else b"\xff" * (ID_LEN + 1))
            hit = self._meta[path] = (md, lows, highs)
            if len(self._meta) > 4096:  # bound the cache on stores that were never compacted
                old = next(iter(self._meta))
                self._meta.pop(old)
                self._layouts.pop(old, None)
                self._schemas.pop(old, None)
        return hit

    def _from_pages(self, path: Path, md: pq.FileMetaData, ids: IdSet | None,
                    trace_id: bytes, columns: tuple[str, ...] | None) -> pa.Table | None:
        """The trace's rows through the page map; None if it cannot say."""
        if ids is None or ids.pages is None:
            return None
        span = ids.rows(trace_id)
        if span is None:
            return None
        first, end = span
        pm = ids.pages
        k0, k1 = pm.find(first), pm.find(end - 1)
        if k0 < 0 or k1 < 0:
            return None  # in a row group whose pages do not line up
        for k in range(k0, k1):  # cells are consecutive rows, or a row group is missing
            a, n, _ = pm.cell(k)
            if pm.cell(k + 1)[0] != a + n:
                return None
        t = read_rows(path, md, pm, (k0, k1 + 1), first, end - first, self._layouts, columns)
        schemas = self._schemas.setdefault(path, {})
        schema = schemas.get(columns)
        if schema is None:
            schema = md.schema.to_arrow_schema().remove_metadata()
            if columns is not None:
                schema = pa.schema([schema.field(c) for c in columns])
            schemas[columns] = schema
        return t if t.schema == schema else t.cast(schema)

    def read(self, files: list[tuple[Path, IdSet | None]], trace_id: bytes,
             columns: tuple[str, ...] | None = None) -> pa.Table | None:
        """The trace's rows from `files` (with their sidecars) with the partition columns
        tenant, date, hour; None if none. Only the stored `columns` (with trace_id) if
        given: a column is ~3% of a fetch's time. FileNotFoundError if a file was swapped
        away meanwhile."""
        tables = []
        for path, ids in files:
            md, lows, highs = self._ranges(path)
            t = self._from_pages(path, md, ids, trace_id, columns)
            if t is None:
                groups = [g for g in range(len(lows)) if lows[g] <= trace_id <= highs[g]]
                if not groups:
                    continue
                t = pq.ParquetFile(path, metadata=md).read_row_groups(groups, columns)
                t = t.filter(pc.equal(t["trace_id"], pa.scalar(trace_id, pa.binary(16))))
            if t.num_rows:
                tenant, date, hour = (path.parent.parent.parent.name[7:],
                                      path.parent.parent.name[5:], int(path.parent.name[5:]))
                n = t.num_rows
                t = t.append_column("tenant", pa.array([tenant] * n, pa.string())) \
                     .append_column("date", pa.array([_date(date)] * n, pa.date32())) \
                     .append_column("hour", pa.array([hour] * n, pa.int32()))
                tables.append(t.replace_schema_metadata(None))
        if len(tables) < 2:
            return tables[0] if tables else None
        return pa.concat_tables(tables, promote_options="default")


def _date(text: str) -> date:
    return date.fromisoformat(text)
