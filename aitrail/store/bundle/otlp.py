"""A bundle's spans and log records as OTLP/JSON lines, as the OpenTelemetry Collector's file
exporter writes them: one ExportTraceServiceRequest (ExportLogsServiceRequest) per line, one
line per trace. Derived from the stored rows, so the offline verifier rebuilds them and
compares bytes."""

from __future__ import annotations

from itertools import groupby

import pyarrow as pa

from ..otlp_decode import logs_request_to_json, request_to_json
from ..otlp_encode import log_rows_to_request, rows_to_request
from .layout import TENANT_COLUMN


def trace_lines(spans: pa.Table) -> bytes:
    """`spans`: bundle rows sorted by (tenant, trace, start, span id)."""
    rows = spans.to_pylist()
    out = []
    for _, group in groupby(rows, key=lambda r: (r[TENANT_COLUMN], r["trace_id"])):
        out.append(request_to_json(rows_to_request(group)) + b"\n")
    return b"".join(out)


def log_lines(logs: pa.Table) -> bytes:
    """`logs`: bundle rows sorted by (tenant, trace, time); records without a trace last."""
    rows = logs.to_pylist()
    out = []
    for _, group in groupby(rows, key=lambda r: (r[TENANT_COLUMN], r["trace_id"])):
        out.append(logs_request_to_json(log_rows_to_request(group)) + b"\n")
    return b"".join(out)
