#!/usr/bin/env python3
"""Validate every line of every sample_traces/*/traces.jsonl.

    .venv/bin/python sample_traces/_validate.py

Each line is parsed with google.protobuf.json_format.ParseDict into an
ExportTraceServiceRequest after converting the hex trace/span ids to base64
(protobuf's canonical JSON mapping for bytes; the Collector's OTLP/JSON uses hex).
Also checks structure: id lengths, parent links, span counts, time bounds.
"""
import base64
import copy
import glob
import json
import os
import sys
from collections import defaultdict

from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

HERE = os.path.dirname(os.path.abspath(__file__))
NOV_2026 = (1793491200 * 10**9, 1796083200 * 10**9)  # [2026-11-01, 2026-12-01) UTC


def hex2b64(h, n):
    assert isinstance(h, str) and len(h) == 2 * n and h == h.lower(), h
    return base64.b64encode(bytes.fromhex(h)).decode()


def to_proto_json(d):
    d = copy.deepcopy(d)
    for rs in d["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                sp["traceId"] = hex2b64(sp["traceId"], 16)
                sp["spanId"] = hex2b64(sp["spanId"], 8)
                if "parentSpanId" in sp:
                    sp["parentSpanId"] = hex2b64(sp["parentSpanId"], 8)
    return d


def main():
    problems, summary = [], []
    for path in sorted(glob.glob(os.path.join(HERE, "*", "traces.jsonl"))):
        folder = os.path.basename(os.path.dirname(path))
        size = os.path.getsize(path)
        if size > 200 * 1024:
            problems.append(f"{folder}: file is {size} bytes")
        spans = {}
        by_trace = defaultdict(list)
        lines = 0
        with open(path, encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                lines += 1
                d = json.loads(line)
                msg = ExportTraceServiceRequest()
                ParseDict(to_proto_json(d), msg)  # raises on any unknown field / bad value
                for rs in d["resourceSpans"]:
                    res = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
                    if "service.name" not in res or "deployment.environment.name" not in res:
                        problems.append(f"{folder}:{no}: resource lacks service.name/deployment.environment.name")
                    for ss in rs["scopeSpans"]:
                        for sp in ss["spans"]:
                            key = (sp["traceId"], sp["spanId"])
                            if key in spans:
                                problems.append(f"{folder}:{no}: duplicate span {key}")
                            spans[key] = sp
                            by_trace[sp["traceId"]].append(sp)
                            if sp["kind"] not in (1, 2, 3, 4, 5):
                                problems.append(f"{folder}: bad kind {sp['kind']}")
                            s, e = int(sp["startTimeUnixNano"]), int(sp["endTimeUnixNano"])
                            if not (NOV_2026[0] <= s <= e < NOV_2026[1]):
                                problems.append(f"{folder}: span {sp['name']} times out of range")
                            for ev in sp.get("events", []):
                                if not (s <= int(ev["timeUnixNano"]) <= e):
                                    problems.append(f"{folder}: event {ev['name']} outside span {sp['name']}")
        for tid, sps in by_trace.items():
            roots = [s for s in sps if "parentSpanId" not in s]
            if len(roots) != 1:
                problems.append(f"{folder}: trace {tid} has {len(roots)} roots")
            if not 4 <= len(sps) <= 15:
                problems.append(f"{folder}: trace {tid} has {len(sps)} spans")
            for s in sps:
                if "parentSpanId" in s:
                    p = spans.get((tid, s["parentSpanId"]))
                    if p is None:
                        problems.append(f"{folder}: {s['name']} has missing parent")
                    elif not (int(p["startTimeUnixNano"]) <= int(s["startTimeUnixNano"])
                              and int(s["endTimeUnixNano"]) <= int(p["endTimeUnixNano"])):
                        problems.append(f"{folder}: {s['name']} not inside parent {p['name']}")
            summary.append((folder, tid, len(sps), roots[0]["name"] if roots else "?"))
        print(f"{folder}: {lines} lines parsed OK, {size} bytes, {len(by_trace)} traces, {len(spans)} spans")
    for row in summary:
        print("  %-42s %s %2d spans  %s" % row)
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print("  " + p)
        sys.exit(1)
    print("\nall lines parsed with json_format.ParseDict; structure checks passed")


if __name__ == "__main__":
    main()
