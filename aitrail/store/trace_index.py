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
from bisect import bisect_left
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MAGIC = b"ATTIDS01"
_HEADER = struct.Struct("<8sQ")  # magic, count
ID_LEN = 16
_SETTLE_NS = 2_000_000_000


def sidecar_path(parquet: Path) -> Path:
    return parquet.with_name(f"_{parquet.stem}.tids")


def write_sidecar(parquet: Path, trace_ids: pa.ChunkedArray | pa.Array) -> Path:
    """Write the sorted distinct trace ids of a file about to be published at `parquet`."""
    values = sorted(v for v in pc.unique(trace_ids.drop_null()).to_pylist()
                    if len(v) == ID_LEN)
    dest = sidecar_path(parquet)
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(_HEADER.pack(MAGIC, len(values)))
        f.write(b"".join(values))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    return dest


class IdSet:
    """A sidecar, mmap'd: membership by binary search over fixed-width ids."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _HEADER.size:
                raise ValueError("short sidecar")
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        magic, count = _HEADER.unpack_from(self._mm, 0)
        if magic != MAGIC or size != _HEADER.size + count * ID_LEN:
            self._mm.close()
            raise ValueError("not a complete trace id sidecar")
        self._n = count

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> bytes:
        at = _HEADER.size + i * ID_LEN
        return self._mm[at:at + ID_LEN]

    def __contains__(self, tid: bytes) -> bool:
        i = bisect_left(self, tid)
        return i < self._n and self[i] == tid

    def close(self) -> None:
        self._mm.close()


@dataclass
class Partition:
    tenant: str
    date: str  # YYYY-MM-DD
    hour: int
    path: Path
    files: list[tuple[Path, IdSet | None]]  # Parquet files and their sidecars


class TraceIndex:
    """The store's partitions and files, cached per directory (inode + mtime), so repeated
    lookups from a long-lived reader (the TUI) cost a few stat calls. Replaced sidecars are
    unmapped when their listing is dropped (mmap closes with its last reference)."""

    def __init__(self, dataset_dir: Path) -> None:
        self.base = Path(dataset_dir)
        self._cache: dict[Path, tuple[tuple[int, int], list]] = {}
        # Per directory, sidecars by (name, inode): a sidecar is replaced, never changed.
        self._idsets: dict[Path, dict[tuple[str, int], IdSet | None]] = {}

    def _cached(self, path: Path, build) -> list:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._cache.pop(path, None)
            return []
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
            return []
        self._cache[path] = (key, value)
        return value

    def _subdirs(self, path: Path, prefix: str) -> list[str]:
        return self._cached(path, lambda es: [e.name for e in es if e.name.startswith(prefix)])

    def _files(self, path: Path) -> list[tuple[Path, IdSet | None]]:
        def build(entries: list[os.DirEntry]) -> list[tuple[Path, IdSet | None]]:
            old = self._idsets.get(path, {})
            new: dict[tuple[str, int], IdSet | None] = {}
            for e in entries:
                if e.name.endswith(".tids") and e.name.startswith("_"):
                    key = (e.name, e.inode())
                    if key in old:
                        new[key] = old[key]
                        continue
                    try:
                        new[key] = IdSet(path / e.name)
                    except (OSError, ValueError):
                        new[key] = None
            self._idsets[path] = new
            by_name = {name: ids for (name, _), ids in new.items()}
            return [(path / e.name, by_name.get(f"_{e.name[:-len('.parquet')]}.tids"))
                    for e in entries
                    if e.name.endswith(".parquet") and not e.name.startswith((".", "_"))]
        return self._cached(path, build)

    def partitions(self, tenant: str | None = None) -> list[Partition]:
        """Every tenant-hour partition, newest first."""
        out = []
        tenants = [f"tenant={tenant}"] if tenant else self._subdirs(self.base, "tenant=")
        for t in tenants:
            tdir = self.base / t
            for d in self._subdirs(tdir, "date="):
                ddir = tdir / d
                for h in self._subdirs(ddir, "hour="):
                    try:
                        hour = int(h[5:])
                    except ValueError:
                        continue
                    out.append(Partition(t[7:], d[5:], hour, ddir / h, self._files(ddir / h)))
        out.sort(key=lambda p: (p.date, p.hour, p.tenant), reverse=True)
        return out

    def files_for(self, trace_id: bytes, tenant: str | None = None) -> list[Path]:
        """Files that may hold spans of the trace: those whose sidecar has it, and those
        without a sidecar."""
        return [path for part in self.partitions(tenant) for path, ids in part.files
                if ids is None or trace_id in ids]


class TraceReader:
    """Reads one trace's rows straight from the row groups that can hold it.

    Files are sorted by trace id, so each row group covers an id range: the footer's min/max
    (cached per file; files are never rewritten in place) name the row group(s) to read, and
    only those are decompressed. DuckDB reads the filter column of every row group instead.
    """

    def __init__(self) -> None:
        self._meta: dict[Path, tuple[pq.FileMetaData, list[bytes], list[bytes]]] = {}

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
                self._meta.pop(next(iter(self._meta)))
        return hit

    def read(self, files: list[Path], trace_id: bytes) -> pa.Table | None:
        """The trace's rows from `files` with the partition columns tenant, date, hour;
        None if none. FileNotFoundError if a file was swapped away meanwhile."""
        tables = []
        for path in files:
            md, lows, highs = self._ranges(path)
            groups = [g for g in range(len(lows)) if lows[g] <= trace_id <= highs[g]]
            if not groups:
                continue
            t = pq.ParquetFile(path, metadata=md).read_row_groups(groups)
            t = t.filter(pc.equal(t["trace_id"], pa.scalar(trace_id, pa.binary(16))))
            if t.num_rows:
                tenant, date, hour = (path.parent.parent.parent.name[7:],
                                      path.parent.parent.name[5:], int(path.parent.name[5:]))
                n = t.num_rows
                t = t.append_column("tenant", pa.array([tenant] * n, pa.string())) \
                     .append_column("date", pa.array([_date(date)] * n, pa.date32())) \
                     .append_column("hour", pa.array([hour] * n, pa.int32()))
                tables.append(t.replace_schema_metadata(None))
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default")


def _date(text: str) -> date:
    return date.fromisoformat(text)
