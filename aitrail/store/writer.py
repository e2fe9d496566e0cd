"""Batches -> Hive-partitioned Parquet files, each published whole.

Layout: <store>/spans/tenant=T/date=YYYY-MM-DD/hour=HH/<writer>-<seq>.parquet by span start
(UTC). A file is written to a temporary name, fsync'd, renamed and its directory fsync'd, so a
reader sees all of it or none of it. Rows are sorted by (trace_id, start) so min/max
statistics prune row groups on a trace fetch (performance.md).
"""

from __future__ import annotations

import os
import re
import uuid
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .records import Batch, hour_partition
from .schema import DICTIONARY_COLUMNS, FILE_METADATA, SPANS_SCHEMA

ROW_GROUP_SIZE = 16_384
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_tenant(tenant: str) -> str:
    """Tenants become directory names: refuse anything that could escape or confuse a path."""
    if not _TENANT_RE.match(tenant):
        raise ValueError(
            f"invalid tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return tenant


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_table(table: pa.Table, dest: Path) -> None:
    """Write one sorted table to `dest` atomically (temp, fsync, rename, fsync dir)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **FILE_METADATA})
    pq.write_table(
        table, tmp, compression="zstd", compression_level=3,
        use_dictionary=DICTIONARY_COLUMNS, row_group_size=ROW_GROUP_SIZE,
        write_statistics=True, data_page_size=64 * 1024,
    )
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)


class ParquetWriter:
    """Writes batches for one writer id; file names never collide across writers or runs."""

    def __init__(self, root: Path, writer_id: str | None = None) -> None:
        self.root = Path(root)
        self.writer_id = writer_id or uuid.uuid4().hex[:12]
        self.seq = 0

    def write(self, batch: Batch) -> list[Path]:
        if not len(batch):
            return []
        table = pa.table(batch.columns, schema=SPANS_SCHEMA)
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, key in enumerate(zip(batch.tenants, batch.hours, strict=True)):
            groups[key].append(i)
        written = []
        for (tenant, hour), rows in sorted(groups.items()):
            part = table.take(pa.array(rows)) if len(groups) > 1 else table
            part = part.sort_by([("trace_id", "ascending"),
                                 ("start_time_unix_nano", "ascending")])
            date, hh = hour_partition(hour)
            self.seq += 1
            dest = (self.root / "spans" / f"tenant={check_tenant(tenant)}" / f"date={date}"
                    / f"hour={hh}" / f"{self.writer_id}-{self.seq:06d}.parquet")
            write_table(part, dest)
            written.append(dest)
        return written
