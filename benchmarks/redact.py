"""Redaction benchmark: detect + mask throughput per core, against baselines in the same run.

The load is benchmarks/ingest_file.py's (6-span AI traces, ~1.3 KB a span, requests of ~512
spans, serialized before anything is timed). Two versions of it:

- CLEAN: as generated.
- MIXED: a copy where --dirty of the spans (default 2 %) carry a secret from
  tests/store/redaction_samples.py, half inside gen_ai.input.messages JSON, half in a new
  attribute, so nearly every request has something to mask.

Timed, single thread, best of --repeat (the machine is shared: read the ratios):

- FLOOR memchr: bytes.find of an absent needle over every request (the cost of touching the
  bytes once).
- FLOOR hyperscan: one scan of every request with a single literal pattern.
- SCAN only: the Redactor's first pass alone (every rule's prefilter in one hyperscan
  database, match ends reported): the detection floor the Python side adds to.
- REDACT raw: Redactor.redact_traces(req, tenant, raw): the work of what the pipeline calls
  when it has the request's bytes (redact_traces_raw: gRPC, HTTP protobuf, file ingest).
  Requests are parsed outside the timer (the pipeline parses them anyway).
- REDACT reserialized: the same without raw (OTLP/JSON): the request is serialized first.
- INGEST on/off (--ingest): file ingest's one-process path (Ingester.add + flush, full
  normalization and Parquet) on MIXED, with the default policy and with no data class
  enabled; by wall clock and by CPU time (the target is judged on CPU time, which a busy
  shared machine skews least).

Targets (issue 5): detect + mask >= 50 MB/s per core; ingest with redaction >= 0.8x without.

Measured here (2 shared cores, loaded; --spans 30000, best of 3, runs vary by ~1.5x):
clean 430-660 MB/s = 2.1-3.1 us/span with raw bytes (380 MB/s re-serialized); mixed (595
secrets) 140-260 MB/s = 5.2-9.5 us/span; the scan alone 900-1,160 MB/s; ingest 1.03x
(redaction is lost in the noise of normalization and Parquet).

    .venv/bin/python benchmarks/redact.py [--spans 50000] [--seed 1] [--repeat 3]
        [--dirty 0.02] [--ingest] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hyperscan
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from ingest_file import make_load

from aitrail.store.ingest import Ingester
from aitrail.store.redaction import RedactionPolicy, Redactor
from aitrail.store.redaction.policy import Scope
from tests.store.redaction_samples import Fakes, planted

TARGET_MB_S = 50.0
TARGET_INGEST_RATIO = 0.8
TENANT = "bench"


def dirty_copy(payloads: list[bytes], fraction: float, seed: int) -> tuple[list[bytes], int]:
    """The same requests with `fraction` of their spans carrying one planted secret."""
    rng, fakes = random.Random(seed), Fakes(seed)
    out, planted_n = [], 0
    for payload in payloads:
        req = ExportTraceServiceRequest.FromString(payload)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    if rng.random() >= fraction:
                        continue
                    _, text, _ = rng.choice(planted(fakes))
                    planted_n += 1
                    msgs = next((a for a in sp.attributes if a.key == "gen_ai.input.messages"),
                                None)
                    if msgs is not None and rng.random() < 0.5:
                        doc = json.loads(msgs.value.string_value)
                        doc[-1]["parts"][0]["content"] += "\n" + text
                        msgs.value.string_value = json.dumps(doc)
                    else:
                        sp.attributes.add(key="app.user_note").value.string_value = text
        out.append(req.SerializeToString())
    return out, planted_n


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def floor_memchr(payloads: list[bytes]) -> int:
    return sum(p.find(b"\x00\xffnever-there\xff\x00") for p in payloads)


def floor_hyperscan(payloads: list[bytes]) -> int:
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=[b"never-there-at-all"], ids=[0], elements=1,
               flags=[hyperscan.HS_FLAG_SINGLEMATCH])
    hits = [0]

    def on_match(*_: object) -> None:
        hits[0] += 1

    for p in payloads:
        db.scan(p, match_event_handler=on_match)
    return hits[0]


def redact_timed(red: Redactor, payloads: list[bytes], use_raw: bool, repeat: int
                 ) -> tuple[float, int]:
    """Best time of redacting fresh copies of the requests (parsing is not timed)."""
    times, count = [], 0
    for _ in range(repeat):
        reqs = [ExportTraceServiceRequest.FromString(p) for p in payloads]
        gc.collect()
        t0 = time.perf_counter()
        count = 0
        for req, raw in zip(reqs, payloads, strict=True):
            count += red.redact_traces(req, TENANT, raw if use_raw else None)
        times.append(time.perf_counter() - t0)
    return min(times), count


def ingest_timed(payloads: list[bytes], redaction: bool, repeat: int) -> tuple[float, float]:
    """Ingester.add + flush of every request: (best wall seconds, best CPU seconds). It
    redacts with the default policy, or with no data class enabled (off: only the scan for
    aitrail's own attribute is left). CPU time is what a busy shared machine skews least."""
    policy = None if redaction else RedactionPolicy(base=Scope(classes=frozenset()))
    times, cpu = [], []
    for _ in range(repeat):
        root = Path(tempfile.mkdtemp(prefix="aitrail-redact-bench-"))
        try:
            ing = Ingester(root, TENANT, redaction=policy)  # compiles outside the timer
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            for payload in payloads:
                ing.add(ExportTraceServiceRequest.FromString(payload), raw=payload)
            ing.flush()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return min(times), min(cpu)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dirty", type=float, default=0.02, help="fraction of spans with a secret")
    ap.add_argument("--ingest", action="store_true", help="also time ingest with/without")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    clean = make_load(args.spans, args.seed)
    mixed, planted_n = dirty_copy(clean, args.dirty, args.seed)
    n_spans = sum(len(ss.spans) for p in clean
                  for rs in ExportTraceServiceRequest.FromString(p).resource_spans
                  for ss in rs.scope_spans)
    store = Path(tempfile.mkdtemp(prefix="aitrail-redact-key-"))
    try:
        red = Redactor(store)
        res: dict[str, Any] = {"spans": n_spans, "requests": len(clean), "planted": planted_n}
        for name, load in (("clean", clean), ("mixed", mixed)):
            mb = sum(map(len, load)) / 1e6
            t_memchr, _ = best(lambda load=load: floor_memchr(load), args.repeat)
            t_hs, _ = best(lambda load=load: floor_hyperscan(load), args.repeat)
            t_scan, _ = best(lambda load=load: [red._matcher.ends(p) for p in load], args.repeat)
            t_raw, masked = redact_timed(red, load, True, args.repeat)
            t_ser, _ = redact_timed(red, load, False, args.repeat)
            res[name] = {
                "MB": round(mb, 1), "masked": masked,
                "floor_memchr_MB_s": round(mb / t_memchr),
                "floor_hyperscan_MB_s": round(mb / t_hs),
                "redact_raw_MB_s": round(mb / t_raw, 1),
                "redact_raw_us_per_span": round(t_raw / n_spans * 1e6, 2),
                "redact_reserialized_MB_s": round(mb / t_ser, 1),
                "redact_reserialized_us_per_span": round(t_ser / n_spans * 1e6, 2),
                "scan_only_MB_s": round(mb / t_scan),
            }
        if args.ingest:
            (off, off_cpu), (on, on_cpu) = (ingest_timed(mixed, False, args.repeat),
                                            ingest_timed(mixed, True, args.repeat))
            res["ingest"] = {"off_spans_s": round(n_spans / off),
                             "on_spans_s": round(n_spans / on), "ratio": round(off / on, 3),
                             "off_cpu_us_per_span": round(off_cpu / n_spans * 1e6, 1),
                             "on_cpu_us_per_span": round(on_cpu / n_spans * 1e6, 1),
                             "cpu_ratio": round(off_cpu / on_cpu, 3)}
    finally:
        shutil.rmtree(store, ignore_errors=True)

    ok = min(res["clean"]["redact_raw_MB_s"], res["mixed"]["redact_raw_MB_s"]) >= TARGET_MB_S
    if args.ingest:
        ok = ok and res["ingest"]["cpu_ratio"] >= TARGET_INGEST_RATIO
    res["ok"] = ok
    if args.json:
        print(json.dumps(res, indent=2))
        return 0 if ok else 1
    print(f"{n_spans} spans in {len(clean)} requests; {planted_n} secrets planted in 'mixed'")
    for name in ("clean", "mixed"):
        r = res[name]
        print(f"{name}: {r['MB']:.1f} MB, {r['masked']} masked\n"
              f"  floors: memchr {r['floor_memchr_MB_s']} MB/s, hyperscan 1 literal "
              f"{r['floor_hyperscan_MB_s']} MB/s, scan with every prefilter "
              f"{r['scan_only_MB_s']} MB/s\n"
              f"  redact (raw bytes given): {r['redact_raw_MB_s']:.1f} MB/s = "
              f"{r['redact_raw_us_per_span']:.2f} us/span; re-serialized: "
              f"{r['redact_reserialized_MB_s']:.1f} MB/s = "
              f"{r['redact_reserialized_us_per_span']:.2f} us/span")
    if args.ingest:
        i = res["ingest"]
        print(f"ingest (1 process, mixed): {i['off_spans_s']} spans/s without redaction, "
              f"{i['on_spans_s']} with ({i['ratio']:.2f}x); CPU {i['off_cpu_us_per_span']} "
              f"vs {i['on_cpu_us_per_span']} us/span: {i['cpu_ratio']:.2f}x "
              f"(target >= {TARGET_INGEST_RATIO})")
    print(f"targets (detect+mask >= {TARGET_MB_S:.0f} MB/s per core"
          f"{', ingest >= 0.8x' if args.ingest else ''}): {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
