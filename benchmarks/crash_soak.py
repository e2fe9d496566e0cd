"""Crash soak: kill `aitrail serve` under load many times on one store, then check that every
acknowledged span is stored exactly once.

The same harness as tests/collector/test_crash.py (which runs a few trials in `make test`):
each trial starts the CLI as a subprocess on the same store and writer id (replaying its
WAL), exports from client threads over OTLP/gRPC, and ends it with SIGKILL, or SIGTERM for
about one trial in five, at a moment drawn from the seeded RNG. SIGKILL tests crash
consistency, not power loss (trust.md section 4).

    .venv/bin/python benchmarks/crash_soak.py [--trials 200] [--seed 1] [--threads 3]
        [--store DIR] [--json]

Exit code 0 if every promise held, 1 with the broken one otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from tests.collector.crash_harness import CrashCheckFailed, Trial, soak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=3, help="client threads (default 3)")
    ap.add_argument("--term-share", type=float, default=0.2,
                    help="share of trials ended by SIGTERM instead of SIGKILL (default 0.2)")
    ap.add_argument("--store", type=Path, help="store directory to use and keep (default: "
                    "a temporary one, removed after a successful run)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args()

    tmp = None if args.store else Path(tempfile.mkdtemp(prefix="aitrail-soak-"))
    store = args.store or tmp / "store"
    log = store.parent / f"{store.name}-serve.log"
    started = time.monotonic()

    def show(t: Trial) -> None:
        if not args.json:
            print(f"trial {t.number:4d}: SIG{t.signal} after {t.delay_s:5.2f} s, replayed "
                  f"{t.replayed:6d} records, acked {t.acked:6d}/{t.sent:6d} spans"
                  + (f", left {t.unfinished_files} unfinished-flush file(s)"
                     if t.unfinished_files else "")
                  + (f", {t.temp_files} temp file(s)" if t.temp_files else ""), flush=True)

    try:
        result = soak(store, args.trials, args.seed, threads=args.threads,
                      term_share=args.term_share, log=log, on_trial=show)
    except CrashCheckFailed as e:
        print(f"FAILED: {e}\nstore kept at {store}; server log {log}", file=sys.stderr)
        return 1
    summary = {
        "trials": len(result.trials),
        "kills": sum(t.signal == "KILL" for t in result.trials),
        "terms": sum(t.signal == "TERM" for t in result.trials),
        "acked_spans_checked": result.acked,
        "stored_spans": result.stored,
        "stored_unacked_spans": result.stored_unacked,
        "starts_that_replayed": sum(t.replayed > 0 for t in result.trials),
        "kills_leaving_unfinished_flush": sum(t.unfinished_files > 0 for t in result.trials),
        "trials_ending_with_temp_files": sum(t.temp_files > 0 for t in result.trials),
        "parquet_files": sum(1 for _ in (store / "spans").glob("*/*/*/*.parquet")),
        "seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps({**summary, "per_trial": [dataclasses.asdict(t)
                                                   for t in result.trials]}))
    else:
        print("OK: every acknowledged span stored exactly once; "
              + ", ".join(f"{k} {v}" for k, v in summary.items()))
    if tmp is not None:
        shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
