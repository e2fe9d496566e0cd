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
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .config import check_tenant
from .fsutil import fsync_dir, publish_lock
from .integrity import publish as integrity
from .records import hour_partition
from .schema import DICTIONARY_COLUMNS, FILE_METADATA, LOG_DICTIONARY_COLUMNS
from .trace_index import write_sidecar

ROW_GROUP_SIZE = 16_384
# Measured on the benchmark load (100k spans, one thread): zstd 3 with 1 MiB pages 443 B/span
# in 0.95 s; zstd 3 with 64 KiB pages 463 B/span; zstd 6 with 1 MiB pages 423 B/span but in
# 2.5 s. Long text compresses per page, so bigger pages pay; a trace fetch still reads only
# one page per column chunk (~1 ms to decompress).
COMPRESSION_LEVEL = 3
DATA_PAGE_SIZE = 1024 * 1024
# Parquet encoding and zstd run in C++ without the GIL, so partitions are written in parallel.
WRITE_THREADS = max(1, min(4, os.cpu_count() or 1))


def write_table(table: pa.Table, dest: Path, store_root: Path,
                dictionary: list[str] | None = None, index: bool = True,
                compression_level: int = COMPRESSION_LEVEL, log: str = "ingest") -> None:
    """Write one sorted table to `dest` atomically (temp, fsync, rename, fsync dir), with
    its trace id sidecar first when `index` (spans files). The file is entered in integrity
    log `log` before the rename (docs/integrity.md), so no reader sees an unlogged file."""
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **FILE_METADATA})
    digests = integrity.table_digests(table)  # outside the lock: CPU only
    with publish_lock(store_root):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        pq.write_table(
            table, tmp, compression="zstd", compression_level=compression_level,
            use_dictionary=DICTIONARY_COLUMNS if dictionary is None else dictionary,
            row_group_size=ROW_GROUP_SIZE,
            write_statistics=True, data_page_size=DATA_PAGE_SIZE,
        )
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if index:
            write_sidecar(dest, table.column("trace_id"))
        integrity.record_add(store_root, log, dest, tmp, digests)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)


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
        if not table.num_rows:
            return []
        time_col, dictionary = (("start_time_unix_nano", None) if dataset == "spans"
                                else ("time_unix_nano", LOG_DICTIONARY_COLUMNS))
        index = dataset == "spans"
        # One sort by (tenant, hour, trace_id, time), then contiguous slices per partition:
        # cheaper than grouping rows in Python and sorting each part.
        keyed = table.append_column("_tenant", pa.array(tenants, pa.string())) \
                     .append_column("_hour", pa.array(hours, pa.int64()))
        keyed = keyed.sort_by([("_tenant", "ascending"), ("_hour", "ascending"),
                               ("trace_id", "ascending"), (time_col, "ascending")])
        tenants = keyed.column("_tenant").to_pylist()
        hours = keyed.column("_hour").to_pylist()
        table = keyed.drop_columns(["_tenant", "_hour"])
        parts: list[tuple[int, int, Path]] = []
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
            parts.append((start, end, dest))
            start = end
        def write(part: tuple[int, int, Path]) -> None:
            a, b, dest = part
            write_table(table.slice(a, b - a), dest, self.root, dictionary, index,
                        self.compression_level, self.log)

        if len(parts) == 1 or WRITE_THREADS == 1:
            for part in parts:
                write(part)
        else:
            with ThreadPoolExecutor(WRITE_THREADS) as pool:
                list(pool.map(write, parts))
        return [dest for _, _, dest in parts]
