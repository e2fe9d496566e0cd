"""Integrity benchmark: what tamper evidence costs to write and to verify, against baselines
measured in the same run (the machine is shared and noisy: read the ratios).

Load: ingest_file.py's AI traces, live (spans within one hour, as a collector sees them).

- WRITE: the flusher's write path, ParquetWriter.write_table on the same converted Arrow
  tables (zstd 1, as flush files), with the integrity hooks (row digests, file hash, fsync'd
  log entry) and without them (patched out), interleaved, best of --repeat. Reported in us
  per span, with the row digests alone next to it.
- VERIFY: `verify_store` over the store those writes made, full (file hashes and row
  digests) and --quick (file hashes only), against a plain SHA-256 of the same files: in
  seconds per GB of Parquet and per million spans. Files are in the page cache (warm).

    .venv/bin/python benchmarks/verify.py [--spans 200000] [--batch 20000] [--repeat 3]
        [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_file import make_load

from aitrail.store import writer as writer_mod
from aitrail.store.integrity import rows as rows_mod
from aitrail.store.integrity.verify import verify_store
from aitrail.store.normalize import Normalizer
from aitrail.store.pipeline import FLUSH_COMPRESSION_LEVEL
from aitrail.store.records import Batch, append_request

HOUR_NS = 3600 * 10**9


def tables(n_spans: int, batch: int, seed: int) -> list[tuple]:
    """The load as flush-sized (table, tenants, hours), converted once, before timing."""
    normalizer = Normalizer()
    out, b = [], Batch()
    for payload in make_load(n_spans, seed, span_ns=HOUR_NS):
        append_request(b, ExportTraceServiceRequest.FromString(payload), "bench", normalizer)
        if len(b) >= batch:
            out.append((b.to_table(), b.tenants, b.hours))
            b = Batch()
    if len(b):
        out.append((b.to_table(), b.tenants, b.hours))
    return out


def write_all(parts: list[tuple], root: Path, hooks: bool) -> float:
    saved = (writer_mod.integrity.table_digests, writer_mod.integrity.record_add)
    if not hooks:
        writer_mod.integrity.table_digests = lambda table: []
        writer_mod.integrity.record_add = lambda *a, **k: None
    try:
        w = writer_mod.ParquetWriter(root, "bench-f00000001",
                                     compression_level=FLUSH_COMPRESSION_LEVEL, log="bench")
        t0 = time.perf_counter()
        for table, tenants, hours in parts:
            w.write_table(table, tenants, hours)
        return time.perf_counter() - t0
    finally:
        writer_mod.integrity.table_digests, writer_mod.integrity.record_add = saved


def sha_all(root: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    size = 0
    for p in sorted((root / "spans").glob("*/*/*/*.parquet")):
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    return time.perf_counter() - t0, size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=20_000, help="spans per flush table")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    parts = tables(args.spans, args.batch, args.seed)
    n = sum(t.num_rows for t, _, _ in parts)
    base = Path(tempfile.mkdtemp(prefix="aitrail-verify-bench-"))
    try:
        with_s, without_s, digest_s = [], [], []
        store = base / "store"
        for r in range(args.repeat):
            for hooks in (True, False):
                root = base / f"w{r}{int(hooks)}"
                (with_s if hooks else without_s).append(write_all(parts, root, hooks))
                if hooks and r == 0:
                    shutil.move(root, store)
                else:
                    shutil.rmtree(root)
            t0 = time.perf_counter()
            for table, _, _ in parts:
                rows_mod.row_digests(table)
            digest_s.append(time.perf_counter() - t0)

        sha_s, size = min(sha_all(store) for _ in range(args.repeat))
        full = [verify_store(store) for _ in range(args.repeat)]
        quick = [verify_store(store, check_rows=False) for _ in range(args.repeat)]
        assert all(r.ok and r.rows == n for r in full + quick), full[0].to_dict()
        full_s = min(r.seconds for r in full)
        quick_s = min(r.seconds for r in quick)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    gb, mspans = size / 1e9, n / 1e6
    us = 1e6 / n
    result = {
        "spans": n, "files": full[0].files, "parquet_bytes": size,
        "write_us_per_span_without": round(min(without_s) * us, 2),
        "write_us_per_span_with": round(min(with_s) * us, 2),
        "write_overhead_us_per_span": round((min(with_s) - min(without_s)) * us, 2),
        "row_digests_us_per_span": round(min(digest_s) * us, 2),
        "verify_s_per_gb": round(full_s / gb, 2), "verify_s_per_m_spans": round(full_s / mspans, 2),
        "verify_quick_s_per_gb": round(quick_s / gb, 2),
        "verify_quick_s_per_m_spans": round(quick_s / mspans, 2),
        "sha256_s_per_gb": round(sha_s / gb, 2), "sha256_s_per_m_spans": round(sha_s / mspans, 2),
    }
    if args.json:
        print(orjson.dumps(result).decode())
        return 0
    print(f"{n} spans in {result['files']} files, {size / 2**20:.1f} MiB of Parquet "
          f"({size / n:.0f} B/span), best of {args.repeat}")
    print(f"write path (flush files, zstd {FLUSH_COMPRESSION_LEVEL}): "
          f"{result['write_us_per_span_without']} us/span without integrity, "
          f"{result['write_us_per_span_with']} with: +{result['write_overhead_us_per_span']} "
          f"us/span (row digests alone {result['row_digests_us_per_span']})")
    print(f"verify, full:      {result['verify_s_per_gb']:>7} s/GB  "
          f"{result['verify_s_per_m_spans']:>7} s per million spans")
    print(f"verify, --quick:   {result['verify_quick_s_per_gb']:>7} s/GB  "
          f"{result['verify_quick_s_per_m_spans']:>7} s per million spans")
    print(f"plain sha256:      {result['sha256_s_per_gb']:>7} s/GB  "
          f"{result['sha256_s_per_m_spans']:>7} s per million spans  (baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
