"""Query benchmark: trace by id (hour known / unknown) and a filtered 1,000-row page, on a
generated store, through aitrail's query API (DuckDB over the Parquet files).

The store is written the way the collector writes it: one flush every `--flush-spans` spans,
so each tenant-hour holds several files (the small-file case performance.md warns about).
Figures are medians over `--repeat` lookups of random existing traces; the baseline in the same
run is DuckDB counting every row of the store (a full scan of one small column). With
`--compact`, every hour is then compacted (`aitrail compact`) and everything measured again.
Targets (issue 3, on a 10M-span store, after compaction): trace by id <= 5 ms p50, filtered page
<= 100 ms.

    .venv/bin/python benchmarks/query.py [--spans 1000000] [--store DIR] [--repeat 50]
        [--compact]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_file import make_load

from aitrail.store.compact import compact_store
from aitrail.store.ingest import Ingester
from aitrail.store.query import Store
from aitrail.store.text_index import words
from aitrail.store.writer import write_table


def build(root: Path, n_spans: int, flush_spans: int, seed: int,
          base_spans: int = 1_000_000) -> int:
    """Write the store in flushes of `flush_spans`, like a running collector would. Past
    `base_spans`, the flush files are copied with fresh trace ids (generating and
    normalizing 10M spans takes most of an hour here; copying takes minutes)."""
    done = 0
    chunk = 0
    while done < min(n_spans, base_spans):
        payloads = make_load(min(flush_spans, n_spans - done), seed + chunk)
        ing = Ingester(root, "bench", writer_id=f"bench{chunk:04d}")
        for p in payloads:
            ing.add(ExportTraceServiceRequest.FromString(p))
        ing.flush()
        done += ing.report.spans
        chunk += 1
        print(f"\r  wrote {done:,} spans", end="", file=sys.stderr, flush=True)
    base = sorted(root.glob("spans/*/*/*/*.parquet"))
    copy = 0
    while done < n_spans:
        copy += 1
        for f in base:
            if done >= n_spans:
                break
            t = pq.read_table(f)
            ids = {}
            salt = copy.to_bytes(4, "big")
            new = [ids.setdefault(tid, hashlib.blake2b(tid + salt, digest_size=16).digest())
                   for tid in t["trace_id"].to_pylist()]
            t = t.set_column(t.schema.get_field_index("trace_id"), t.schema.field("trace_id"),
                             pa.array(new, pa.binary(16)))
            t = t.sort_by([("trace_id", "ascending"), ("start_time_unix_nano", "ascending")])
            write_table(t, f.with_name(f"copy{copy:03d}-{f.name}"), root)
            done += t.num_rows
            print(f"\r  wrote {done:,} spans", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return done


def ms(samples: list[float]) -> str:
    qs = statistics.quantiles(samples, n=100) if len(samples) > 1 else samples * 99
    return f"p50 {statistics.median(samples) * 1000:8.1f} ms   p95 {qs[94] * 1000:8.1f} ms"


def measure(root: Path, repeat: int, seed: int) -> None:
    files = list(root.glob("spans/*/*/*/*.parquet"))
    size = sum(f.stat().st_size for f in files)
    sidecars = sum(f.stat().st_size for f in root.glob("spans/*/*/*/_*.tids"))
    rng = random.Random(seed)
    with Store(root) as st:
        t0 = time.perf_counter()
        total = st.sql("select count(*) as n from _spans").rows[0]["n"]
        scan = time.perf_counter() - t0
        picks = st.sql("select lower(hex(trace_id)) as t, date, hour from _spans "
                       f"using sample {max(repeat * 4, 200)} rows", limit=None).rows
        rng.shuffle(picks)
        picks = picks[:repeat]
        raw, unknown, known, pages, facets = [], [], [], [], []
        for p in picks:
            t0 = time.perf_counter()
            assert st.raw_trace(p["t"])
            raw.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert st.trace(p["t"]).rows
            unknown.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            st.con.execute("select * from _spans where date = ? and hour = ? and trace_id = "
                           "unhex(?)", [p["date"], p["hour"], p["t"]]).fetchall()
            known.append(time.perf_counter() - t0)
        for _ in range(max(5, repeat // 5)):
            filters = {"verdict": rng.choice(["allow", "deny", "review"]),
                       "service": rng.choice(["support-agent", "code-review-agent",
                                              "oncall-assistant"])}
            t0 = time.perf_counter()
            res = st.search(limit=1000, **filters)
            pages.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            st.facets(**filters)
            facets.append(time.perf_counter() - t0)
        # Words to search for: long ones from sampled prompts (rare), and "the" (common).
        texts = st.sql("select input_messages as m from _spans where input_messages is not "
                       f"null using sample {repeat * 2} rows", limit=None).rows
        rare = [w for r in texts for w in words(r["m"]) if len(w) >= 9 and not w.isdigit()]
        rng.shuffle(rare)
        rare_t, common_t = [], []
        for w in rare[:max(5, repeat // 5)]:
            t0 = time.perf_counter()
            assert st.search(limit=100, text=w).rows
            rare_t.append(time.perf_counter() - t0)
        for _ in range(3):
            t0 = time.perf_counter()
            st.search(limit=100, text="the")
            common_t.append(time.perf_counter() - t0)
    print(f"store: {total:,} spans in {len(files):,} files, {size / 2**20:,.0f} MiB "
          f"({size / max(total, 1):.1f} B/span; trace index sidecars "
          f"{sidecars / max(total, 1):.1f} B/span)")
    print(f"baseline: count(*) over the store    {scan * 1000:8.1f} ms")
    print(f"trace by id, stored rows (API)       {ms(raw)}")
    print(f"trace by id, Store.trace (API)       {ms(unknown)}")
    print(f"trace by id, hour known (SQL glob)   {ms(known)}")
    print(f"filtered page, 1,000 traces (API)    {ms(pages)}   "
          f"({len(res.rows)} rows, truncated={res.truncated})")
    print(f"facets under the same filter (API)   {ms(facets)}")
    print(f"free text, a rare word, 100 traces   {ms(rare_t)}")
    print(f"free text, 'the', 100 traces         {ms(common_t)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--flush-spans", type=int, default=50_000)
    ap.add_argument("--store", type=Path, help="reuse or keep the store here")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--compact", action="store_true",
                    help="then compact every hour and measure again (before/after)")
    args = ap.parse_args(argv)

    tmp = None
    root = args.store
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="aitrail-qbench-")
        root = Path(tmp.name)
    if not any(root.glob("spans/*/*/*/*.parquet")):
        t0 = time.perf_counter()
        n = build(root, args.spans, args.flush_spans, args.seed)
        print(f"built {n:,} spans in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    measure(root, args.repeat, args.seed)
    if args.compact:
        t0 = time.perf_counter()
        report = compact_store(root, grace_s=0)
        print(f"\ncompacted {report.partitions} tenant-hours, {report.files_in:,} files -> "
              f"{report.files_out} in {time.perf_counter() - t0:.0f} s\n")
        measure(root, args.repeat, args.seed)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
