"""Bundle benchmark: export, offline verify and import times, for one sample incident and
for a generated store (ingest_file.py's AI traces, spread over a day), every trace exported.

    .venv/bin/python benchmarks/bundle.py [--spans 10000] [--json]

Times are wall clock on a shared machine (single run each): read them as orders of
magnitude. Bundle size and manifest size are exact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson
from ingest_file import make_load
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aitrail.store.bundle.export import Selection, export
from aitrail.store.bundle.import_ import import_bundle
from aitrail.store.bundle.verify import verify_bundle
from aitrail.store.ingest import Ingester
from aitrail.store.query import Store
from aitrail.store.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent


def measure(store: Path, sel: Selection, out: Path) -> dict:
    t0 = time.perf_counter()
    with Store(store) as st:
        rep = export(st, Workspace(store, "bench"), sel, out)
    t1 = time.perf_counter()
    check = verify_bundle(out)
    t2 = time.perf_counter()
    assert check.ok, check.problems
    imported = import_bundle(out.with_suffix(".target"), out)
    t3 = time.perf_counter()
    return {"spans": rep.spans, "traces": rep.traces, "bundle_bytes": out.stat().st_size,
            "manifest_bytes": rep.files["manifest.json"], "export_s": round(t1 - t0, 3),
            "verify_s": round(t2 - t1, 3), "import_s": round(t3 - t2, 3),
            "imported": imported.spans}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=10_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        sample = base / "sample"
        Ingester(sample).add_files(
            [ROOT / "sample_traces" / "02-migration-pr-table-lock" / "traces.jsonl"])
        results = {"incident": measure(sample, Selection("change",
                                                         ["chg-billing-migration-4821"]),
                                       base / "incident.tar.gz")}
        gen = base / "generated"
        ing = Ingester(gen)
        for data in make_load(args.spans, seed=7):
            ing.add(ExportTraceServiceRequest.FromString(data))
        ing.close()
        results["generated"] = measure(gen, Selection("where", ["true"]), base / "gen.tar.gz")
    if args.json:
        print(orjson.dumps(results).decode())
    else:
        for name, r in results.items():
            print(f"{name:>9}: {r['spans']} spans / {r['traces']} traces, bundle "
                  f"{r['bundle_bytes'] / 2**20:.2f} MiB (manifest {r['manifest_bytes'] / 2**20:.2f}"
                  f" MiB): export {r['export_s']} s, verify {r['verify_s']} s, import "
                  f"{r['import_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
