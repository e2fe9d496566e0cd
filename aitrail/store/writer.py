"""Batches -> Hive-partitioned Parquet files, each published whole.

Layout: <store>/spans/tenant=T/date=YYYY-MM-DD/hour=HH/<writer>-<seq>.parquet by span start
(UTC). A file is written to a temporary name, fsync'd, renamed and its directory fsync'd, so a
reader sees all of it or none of it. Rows are sorted by (trace_id, start) so min/max
statistics prune row groups on a trace fetch (performance.md).
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .config import check_tenant
from .fsutil import fsync_dir, publish_lock
from .integrity import publish as integrity
from .records import hour_partition
from .schema import DICTIONARY_COLUMNS, FILE_METADATA, LOG_DICTIONARY_COLUMNS
from .trace_index import sidecar_path, write_sidecar

ROW_GROUP_SIZE = 16_384
# Measured on the benchmark load (100k spans, one thread): zstd 3 with 1 MiB pages 443 B/span
# in 0.95 s; zstd 3 with 64 KiB pages 463 B/span; zstd 6 with 1 MiB pages 423 B/span but in
# 2.5 s. Long text compresses per page, so bigger pages pay; a trace fetch still reads only
# one page per column chunk (~1 ms to decompress).
COMPRESSION_LEVEL = 3
DATA_PAGE_SIZE = 1024 * 1024
# Parquet encoding and zstd run in C++ without the GIL, so partitions are written in parallel.
WRITE_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass
class Staged:
    """A file written and fsync'd under a temporary name (`tmp`), with its sidecar (None for
    logs) and its integrity facts, waiting to be published at `dest`."""
    dest: Path
    tmp: Path
    sidecar: Path | None
    facts: dict


@dataclass
class Written:
    """A file written under its temporary name, not yet fsync'd (`seal` does the rest)."""
    dest: Path
    tmp: Path
    digests: list[bytes]
    trace_ids: pa.ChunkedArray | None  # for its sidecar (spans files)


def write_tmp(table: pa.Table, dest: Path, tmp_dir: Path, dictionary: list[str] | None = None,
              index: bool = True, compression_level: int = COMPRESSION_LEVEL) -> Written:
    """Write one sorted table as the temporary file `.<dest name>.tmp` in `tmp_dir`, with
    its row digests."""
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **FILE_METADATA})
    digests = integrity.table_digests(table)
    tmp = tmp_dir / f".{dest.name}.tmp"
    pq.write_table(
        table, tmp, compression="zstd", compression_level=compression_level,
        use_dictionary=DICTIONARY_COLUMNS if dictionary is None else dictionary,
        row_group_size=ROW_GROUP_SIZE,
        write_statistics=True, data_page_size=DATA_PAGE_SIZE,
    )
    return Written(dest, tmp, digests, table.column("trace_id") if index else None)


def seal(written: Written) -> Staged:
    """fsync a written file and add its trace id sidecar (spans files): in its destination's
    directory when it was written there, else next to it until `publish`. The file hash is
    computed here, so publishing is only renames and a log entry."""
    with open(written.tmp, "rb+") as f:
        os.fsync(f.fileno())
    sidecar = (None if written.trace_ids is None else
               write_sidecar(written.dest, written.trace_ids, into=written.tmp.parent))
    return Staged(written.dest, written.tmp, sidecar,
                  integrity.file_facts(written.tmp, written.digests))


def stage(table: pa.Table, dest: Path, tmp_dir: Path, dictionary: list[str] | None = None,
          index: bool = True, compression_level: int = COMPRESSION_LEVEL) -> Staged:
    """`write_tmp` then `seal`."""
    return seal(write_tmp(table, dest, tmp_dir, dictionary, index, compression_level))


def publish(store_root: Path, log: str, staged: Staged) -> None:
    """Publish a staged file (the caller holds `publish_lock`): its sidecar first, then the
    integrity log entry (docs/integrity.md: no reader sees an unlogged file), the rename and
    the directory fsync."""
    dest = staged.dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if staged.sidecar is not None and staged.sidecar != sidecar_path(dest):
        os.replace(staged.sidecar, sidecar_path(dest))
    integrity.record_add(store_root, log, dest, staged.facts)
    os.replace(staged.tmp, dest)
    fsync_dir(dest.parent)


def write_table(table: pa.Table, dest: Path, store_root: Path,
                dictionary: list[str] | None = None, index: bool = True,
                compression_level: int = COMPRESSION_LEVEL, log: str = "ingest") -> None:
    """Write one sorted table to `dest` atomically: staged in its own directory, under the
    publish lock (compaction swaps whole directories), then published."""
    with publish_lock(store_root):
        dest.parent.mkdir(parents=True, exist_ok=True)
        publish(store_root, log, stage(table, dest, dest.parent, dictionary, index,
                                       compression_level))


class ParquetWriter:
    """Writes batches for one writer id; file names never collide across writers or runs."""

    def __init__(self, root: Path, writer_id: str | None = None,
                 compression_level: int = COMPRESSION_LEVEL, log: str = "ingest") -> None:
        self.root = Path(root)
        self.writer_id = writer_id or uuid.uuid4().hex[:12]
        self.compression_level = compression_level
        self.log = log  # the integrity log its files are entered in
        self.seq = 0

    def write_table(self, table: pa.Table, tenants: list[str], hours: list[int],
                    dataset: str = "spans") -> list[Path]:
        """Write rows (each with its tenant and hour bucket) as one file per partition of
        `dataset` ("spans", or "logs")."""
        def write(part: tuple[pa.Table, Path]) -> None:
            write_table(part[0], part[1], self.root, *self._options(dataset),
                        self.compression_level, self.log)

        parts = self._parts(table, tenants, hours, dataset)
        _each(write, parts)
        return [dest for _, dest in parts]

    def stage_table(self, table: pa.Table, tenants: list[str], hours: list[int],
                    tmp_dir: Path, dataset: str = "spans") -> list[Staged]:
        """Like `write_table`, but only staged in `tmp_dir` (a directory of this writer's
        own, so no lock is needed yet); `publish` each under `publish_lock`."""
        return [seal(w) for w in self.write_tmp_table(table, tenants, hours, tmp_dir, dataset)]

    def write_tmp_table(self, table: pa.Table, tenants: list[str], hours: list[int],
                        tmp_dir: Path, dataset: str = "spans") -> list[Written]:
        """`stage_table` without the `seal`: the caller seals them, maybe in another thread."""
        def write(part: tuple[pa.Table, Path]) -> Written:
            return write_tmp(part[0], part[1], tmp_dir, *self._options(dataset),
                             self.compression_level)

        return _each(write, self._parts(table, tenants, hours, dataset))

    @staticmethod
    def _options(dataset: str) -> tuple[list[str] | None, bool]:
        """(dictionary columns, with a trace id sidecar) of a dataset's files."""
        return (None, True) if dataset == "spans" else (LOG_DICTIONARY_COLUMNS, False)

    def _parts(self, table: pa.Table, tenants: list[str], hours: list[int],
               dataset: str) -> list[tuple[pa.Table, Path]]:
        """The rows sorted, sliced per tenant-hour, each slice with its file name."""
        if not table.num_rows:
            return []
        time_col = "start_time_unix_nano" if dataset == "spans" else "time_unix_nano"
        # One sort by (tenant, hour, trace_id, time), then contiguous slices per partition:
        # cheaper than grouping rows in Python and sorting each part.
        keyed = table.append_column("_tenant", pa.array(tenants, pa.string())) \
                     .append_column("_hour", pa.array(hours, pa.int64()))
        keyed = keyed.sort_by([("_tenant", "ascending"), ("_hour", "ascending"),
                               ("trace_id", "ascending"), (time_col, "ascending")])
        tenants = keyed.column("_tenant").to_pylist()
        hours = keyed.column("_hour").to_pylist()
        table = keyed.drop_columns(["_tenant", "_hour"])
        parts: list[tuple[pa.Table, Path]] = []
        start = 0
        n = len(tenants)
        while start < n:
            end = start + 1
            while end < n and tenants[end] == tenants[start] and hours[end] == hours[start]:
                end += 1
            date, hh = hour_partition(hours[start])
            self.seq += 1
            dest = (self.root / dataset / f"tenant={check_tenant(tenants[start])}"
                    / f"date={date}" / f"hour={hh}" / f"{self.writer_id}-{self.seq:06d}.parquet")
            parts.append((table.slice(start, end - start), dest))
            start = end
        return parts


def _each(fn, parts: list) -> list:
    """fn over the parts, in threads when there are several: Parquet encoding and zstd run
    in C++ without the GIL."""
    if len(parts) <= 1 or WRITE_THREADS == 1:
        return [fn(p) for p in parts]
    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        return list(pool.map(fn, parts))
