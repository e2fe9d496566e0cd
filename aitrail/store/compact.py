"""Compaction: each closed tenant-hour of spans (and of log records) becomes one file laid
out for fetch.

Frequent flushes make many small files, and per-file footers are what makes a store slow
(performance.md). A tenant-hour is *closed* `grace` after it ends; its committed files are
merged into one file sorted by (trace_id, start), with pages of PAGE_ROWS rows in every column
(a trace is read from its pages: pages.py), dictionary only on low-cardinality columns, and its
trace id sidecar (trace_index.py).

Readers must never see a half-swapped partition (both the merged file and its inputs, or
neither). The merged file and hard links to any file that arrived meanwhile are assembled in
a new directory outside the dataset, then swapped with the partition directory in one
`renameat2(RENAME_EXCHANGE)` under the exclusive publish lock (writers hold it shared while
they publish). A reader that listed the old directory and opens a file after the swap gets
"file not found" and retries (query.py). A crash leaves either the old or the new directory
in place; leftovers under `_compact/` are removed by the next compaction.

Only *committed* files are merged: a collector's flush file is committed once its writer's
checkpoint covers it (a restart would delete and rewrite an uncommitted one from the WAL).
"""

from __future__ import annotations

import ctypes
import fcntl
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from . import text_index
from .errors import StoreError
from .fsutil import fsync_dir, fsync_tree, publish_lock
from .integrity import publish as integrity
from .pages import PAGE_ROWS, page_map
from .schema import DICTIONARY_COLUMNS, FILE_METADATA, LOG_DICTIONARY_COLUMNS, LONG_TEXT_COLUMNS
from .trace_index import TraceIndex, sidecar_path, write_sidecar
from .writer import COMPRESSION_LEVEL

GRACE_S = 600  # an hour is closed ten minutes after it ends (late spans)
# Per dataset: the time column rows are sorted by after the trace id, and the columns with a
# dictionary (as the flush writer writes them).
_TIME = {"spans": "start_time_unix_nano", "logs": "time_unix_nano"}
_DICTIONARY = {"spans": DICTIONARY_COLUMNS, "logs": LOG_DICTIONARY_COLUMNS}
# Written without compression: the dictionary columns of spans. Their pages are run-length
# indices and a dictionary that zstd hardly shrinks (468 -> 474 B/span at 10M spans), and a
# trace fetch pays ~8 us here to set up zstd for each page it decodes, two per such column:
# Store.trace 4.2-5.3 ms p50 instead of 5.4-6.1 on the 10M store re-merged so (interleaved
# runs); the filtered page, facets and a filtered count were no slower.
_UNCOMPRESSED = {"spans": DICTIONARY_COLUMNS, "logs": []}
# Rows sorted at once: a bigger hour is merged in trace-id ranges of about this many rows,
# so memory stays bounded whatever the hour's size (~1.5 KB of Arrow per span).
RANGE_ROWS = 50_000
# Laid out for fetch: pages of exactly PAGE_ROWS rows in every column, so a trace is read
# from the pages that hold it (pages.py), and a page index. Measured (benchmarks/query.py):
# the former 4k-row groups of 64 KiB pages 453 B/span at 10M, a trace's row group ~10-14 ms
# to decode; 16k-row groups of 512-row pages 468 B/span, ~3 ms through the page map. On a
# 400k-span file, DuckDB scans of a few small columns were ~25-45% slower with any page row
# cap (more pages); on the whole 10M store, interleaved with the former layout, the filtered
# page, facets and free text stayed within the noise. 256-row pages (with uncompressed
# dictionary columns): 474 -> 494 B/span and sidecars 4.9 -> 6.4 B/span, Store.trace 5.3 ->
# 4.4 ms p50 interleaved (a fetch decodes half the long text), the filtered page, facets and
# a filtered count within the noise; 128-row pages: 533 B/span. The pages keep their rows
# whatever their size (the writer checks size per batch, and batches end at page
# boundaries).
COMPACT_ROW_GROUP = 16_384
COMPACT_PAGE_SIZE = 1024 * 1024
COMPACTED_PREFIX = "compacted-"
_FLUSH_FILE = re.compile(r"^(?P<writer>[A-Za-z0-9_.-]+)-f(?P<seq>\d{8})-\d+\.parquet$")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class CompactionUnsupported(StoreError):
    """The filesystem cannot swap directories atomically."""


@dataclass
class CompactReport:
    partitions: int = 0
    files_in: int = 0
    files_out: int = 0
    spans: int = 0
    log_records: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    skipped: list[str] = field(default_factory=list)  # "partition: reason"

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def _exchange(a: Path, b: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise CompactionUnsupported("this C library has no renameat2; compaction needs it")
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        if err in (22, 95, 38):  # EINVAL, EOPNOTSUPP, ENOSYS
            raise CompactionUnsupported(
                f"the filesystem under {b} cannot swap directories atomically "
                f"({os.strerror(err)}); compaction is off for this store")
        raise OSError(err, os.strerror(err), str(b))


class _Checkpoints:
    """Which collector flush files are committed (their writer's checkpoint covers them)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._seq: dict[str, int | None] = {}

    def committed(self, path: Path) -> bool:
        m = _FLUSH_FILE.match(path.name)
        if m is None:
            return True  # `aitrail ingest`, compaction, reindex: published = committed
        writer = m.group("writer")
        if writer not in self._seq:
            wal = self.root / "_wal" / writer
            cp = wal / "checkpoint.json"
            if cp.exists():
                self._seq[writer] = orjson.loads(cp.read_bytes())["flush_seq"]
            else:  # no WAL dir: not a collector's (copied store); WAL, no checkpoint: none
                self._seq[writer] = None if wal.exists() else math.inf
        seq = self._seq[writer]
        return seq is not None and int(m.group("seq")) <= seq


def _hour_end(date: str, hour: int) -> datetime:
    return datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC) + timedelta(hours=hour + 1)


def plan(root: Path, now: datetime | None = None, grace_s: float = GRACE_S,
         tenant: str | None = None, dataset: str = "spans") -> list[tuple[Path, list[Path]]]:
    """Closed partitions worth compacting, oldest first, with their committed inputs.
    Spans hours also when a file lacks its trace index or the hour its text index."""
    now = now or datetime.now(UTC)
    checkpoints = _Checkpoints(Path(root))
    out = []
    for part in reversed(TraceIndex(Path(root) / dataset).partitions(tenant)):
        if _hour_end(part.date, part.hour) + timedelta(seconds=grace_s) > now:
            continue
        inputs = [(p, ids) for p, ids in part.files if checkpoints.committed(p)]
        if len(inputs) >= 2 or (dataset == "spans" and inputs and (
                any(ids is None for _, ids in inputs)
                or text_index.TextIndexes().covered(part.path) != inputs[0][0].name)):
            out.append((part.path, [p for p, _ in inputs]))
    return out


def merge(inputs: list[Path], dest: Path, spill_dir: Path | None = None,
          range_rows: int | None = None, dataset: str = "spans") -> int:
    """Merge sorted files into one at `dest` (+ sidecar); returns rows.

    Memory stays bounded whatever the hour's size: with more than `range_rows` rows, one
    pass reads the inputs a row group at a time and spills each row to the Arrow file of its
    trace-id range (lz4, in `spill_dir`); then each range is sorted and written in turn.
    """
    files = [pq.ParquetFile(p) for p in inputs]
    schema = files[0].schema_arrow.remove_metadata()
    shape = [(f.name, f.type) for f in schema]
    for p, f in zip(inputs, files, strict=True):
        if [(x.name, x.type) for x in f.schema_arrow] != shape:
            raise StoreError(f"{p} has another schema; run `aitrail reindex` first")
        meta = f.schema_arrow.metadata or {}
        if meta.get(b"aitrail.normalizer_version") != FILE_METADATA[
                b"aitrail.normalizer_version"]:
            raise StoreError(f"{p} was normalized by another version; run `aitrail reindex`")
    total = sum(f.metadata.num_rows for f in files)
    ranges = max(1, math.ceil(total / (range_rows or RANGE_ROWS)))
    tmp = dest.with_name(f".{dest.name}.tmp")
    ids: list[pa.Array] = []
    rows = 0
    plain = set(_UNCOMPRESSED[dataset])
    with pq.ParquetWriter(tmp, schema.with_metadata(FILE_METADATA),
                          compression={n: "none" if n in plain else "zstd"
                                       for n in schema.names},
                          compression_level={n: COMPRESSION_LEVEL for n in schema.names
                                             if n not in plain},
                          use_dictionary=_DICTIONARY[dataset],
                          write_statistics=[n for n in schema.names
                                            if n not in LONG_TEXT_COLUMNS],
                          data_page_size=COMPACT_PAGE_SIZE, max_rows_per_page=PAGE_ROWS,
                          write_page_index=True) as out:
        for part in _range_tables(files, schema, ranges, spill_dir or dest.parent):
            t = part.sort_by([("trace_id", "ascending"), (_TIME[dataset], "ascending")])
            del part  # only one range in memory at a time (and its sorted copy)
            if dataset == "spans":
                t = drop_exact_duplicates(t)
            if t.num_rows:
                out.write_table(t, row_group_size=COMPACT_ROW_GROUP)
                ids.append(pa.concat_arrays(t["trace_id"].chunks))
                rows += t.num_rows
            del t
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    if dataset == "spans":
        write_sidecar(dest, pa.chunked_array(ids, pa.binary(16)), page_map(tmp, PAGE_ROWS))
    os.replace(tmp, dest)
    return rows


def drop_exact_duplicates(t: pa.Table) -> pa.Table:
    """Rows identical to an earlier row with the same trace and span id: a retry stored by
    two collector processes (or collectors). Spans that share ids but differ are all kept."""
    key = pc.binary_join_element_wise(t["trace_id"].cast(pa.binary()),
                                      t["span_id"].cast(pa.binary()), b"")
    counts = pa.table({"k": key}).group_by("k").aggregate([([], "count_all")])
    dup_keys = counts.filter(pc.greater(counts["count_all"], 1))["k"]
    if not len(dup_keys):
        return t
    candidates = pc.indices_nonzero(pc.is_in(key, value_set=dup_keys)).to_pylist()
    seen: set[bytes] = set()
    drop = []
    for i, row in zip(candidates, t.take(candidates).to_pylist(), strict=True):
        ident = orjson.dumps(row, option=orjson.OPT_SORT_KEYS,
                             default=lambda v: v.hex() if isinstance(v, bytes) else str(v))
        if ident in seen:
            drop.append(i)
        else:
            seen.add(ident)
    if not drop:
        return t
    keep = pc.invert(pc.is_in(pa.array(range(t.num_rows)), value_set=pa.array(drop)))
    return t.filter(keep)


def _range_tables(files: list[pq.ParquetFile], schema: pa.Schema, ranges: int,
                  spill_dir: Path) -> Iterator[pa.Table]:
    """The inputs' rows as one table per trace-id range, in range order."""
    if ranges == 1:
        yield pa.concat_tables(
            [f.read().replace_schema_metadata(None).cast(schema) for f in files])
        return
    bounds = [pa.scalar((i * 2**128 // ranges).to_bytes(16, "big"), pa.binary(16))
              for i in range(1, ranges)]
    col = files[0].schema_arrow.get_field_index("trace_id")
    spill_dir.mkdir(parents=True, exist_ok=True)
    paths = [spill_dir / f".range-{i:05d}.arrow" for i in range(ranges)]
    options = ipc.IpcWriteOptions(compression="lz4")
    sinks = [ipc.new_file(p, schema, options=options) for p in paths]
    try:
        for f in files:
            for g in range(f.num_row_groups):
                stats = f.metadata.row_group(g).column(col).statistics
                t = f.read_row_group(g).replace_schema_metadata(None).cast(schema)
                # Ranges this row group can touch, from its min/max (sorted inputs: few).
                first, last = 0, ranges - 1
                if stats is not None and stats.has_min_max and not stats.null_count:
                    first = sum(stats.min >= b.as_py() for b in bounds)
                    last = sum(stats.max >= b.as_py() for b in bounds)
                tid = t["trace_id"]
                for i in range(first, last + 1):
                    keep = None
                    if i > 0:
                        keep = pc.greater_equal(tid, bounds[i - 1])
                    elif tid.null_count:  # log records without a trace go to the first
                        keep = pc.or_kleene(pc.is_null(tid), pc.less(tid, bounds[0]))
                        part = t.filter(keep)
                        if part.num_rows:
                            sinks[i].write_table(part)
                        continue
                    if i < ranges - 1:
                        below = pc.less(tid, bounds[i])
                        keep = below if keep is None else pc.and_(keep, below)
                    part = t if keep is None else t.filter(keep)
                    if part.num_rows:
                        sinks[i].write_table(part)
        for sink in sinks:
            sink.close()
        for p in paths:
            with pa.memory_map(str(p)) as source:
                table = ipc.open_file(source).read_all()
            p.unlink()
            yield table
            del table
    finally:
        for p in paths:
            p.unlink(missing_ok=True)


def compact_partition(root: Path, part: Path, inputs: list[Path],
                      dataset: str = "spans") -> tuple[int, int]:
    """Merge `inputs` of partition directory `part` and swap it in; returns (rows, bytes)."""
    work = Path(root) / "_compact" / uuid.uuid4().hex[:12]
    new = work / part.name
    new.mkdir(parents=True)
    try:
        first = inputs[0] if len(inputs) == 1 else None
        if dataset == "spans" and first and first.name.startswith(COMPACTED_PREFIX) \
                and sidecar_path(first).exists():
            # Already merged, only its text index is missing: link it, do not rewrite it.
            dest = new / inputs[0].name
            os.link(inputs[0], dest)
            os.link(sidecar_path(inputs[0]), sidecar_path(dest))
            rows = pq.read_metadata(dest).num_rows
        else:
            dest = new / f"{COMPACTED_PREFIX}{uuid.uuid4().hex[:12]}.parquet"
            rows = merge(inputs, dest, spill_dir=work, dataset=dataset)
        if dataset == "spans":
            text_index.build(dest, new / text_index.TEXT_DIR)
            fsync_tree(new / text_index.TEXT_DIR)
        size = dest.stat().st_size
        # Integrity: the merged file must hold its inputs' rows (docs/integrity.md).
        replacement = integrity.prepare_replacement(root, dest, part / dest.name, inputs,
                                                    dataset)
        names = {p.name for p in inputs} | {sidecar_path(p).name for p in inputs}
        with publish_lock(root, exclusive=True):
            present = set(os.listdir(part))
            if not {p.name for p in inputs} <= present:
                raise StoreError(f"{part}: files changed during compaction; try again")
            # Files that arrived (or were not committed) meanwhile move along as hard links;
            # an older text index covered an input and is replaced.
            for name in sorted(present - names):
                if not name.startswith(".") and not (part / name).is_dir():
                    os.link(part / name, new / name)
            fsync_dir(new)
            entry = integrity.record_replacement(root, replacement)
            try:
                _exchange(new, part)
            except BaseException:
                integrity.void_interrupted_replacement(root, entry)
                raise
            fsync_dir(part.parent)
        return rows, size
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the old directory, after a swap


def compact_store(root: Path, now: datetime | None = None, grace_s: float = GRACE_S,
                  tenant: str | None = None, dry_run: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> CompactReport:
    """Compact every closed partition (one compaction at a time per store); `should_stop`
    is asked between tenant-hours (a collector shutting down)."""
    root = Path(root)
    report = CompactReport()
    if not (root / "spans").exists() and not (root / "logs").exists():
        return report
    (root / "_locks").mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "_locks" / "compact.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report.skipped.append("store: another compaction is running")
            return report
        integrity.void_interrupted_replacement(root)  # a crash between its log and its swap
        shutil.rmtree(root / "_compact", ignore_errors=True)  # a crashed compaction's work
        todo = [(dataset, part, inputs) for dataset in ("spans", "logs")
                for part, inputs in plan(root, now, grace_s, tenant, dataset)]
        for i, (dataset, part, inputs) in enumerate(todo, start=1):
            if should_stop is not None and should_stop():
                break
            report.partitions += 1
            report.files_in += len(inputs)
            report.bytes_in += sum(p.stat().st_size for p in inputs)
            if not dry_run:
                try:
                    rows, size = compact_partition(root, part, inputs, dataset)
                except (StoreError, FileNotFoundError) as e:
                    report.skipped.append(f"{part.relative_to(root)}: {e}")
                else:
                    report.files_out += 1
                    if dataset == "spans":
                        report.spans += rows
                    else:
                        report.log_records += rows
                    report.bytes_out += size
            if progress:
                progress(i, len(todo))
        return report
    finally:
        os.close(fd)

