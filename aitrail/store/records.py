"""ExportTraceServiceRequest -> rows of the `spans` record (decode + normalize).

Touches each attribute once: performance.md measured the span-to-row conversion as ~80% of
ingest cost, so this loop is the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .anyvalue import attrs_to_dict
from .normalize import Normalizer
from .schema import AUDIT_COLUMNS, GENERIC_FIELDS, SPANS_SCHEMA

try:  # the compiled converter (setup.py); where it was not built, the reference does the work
    from . import _spanrows
except ImportError:  # pragma: no cover - tests/store/test_spanrows.py requires it
    _spanrows = None

_HOUR_NS = 3_600_000_000_000
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_dumps = orjson.dumps
_AUDIT_STRUCT = pa.struct([pa.field(name, t) for name, t in AUDIT_COLUMNS])


def _attrs_json(d: dict[str, Any]) -> str | None:
    return _dumps(d).decode() if d else None




def rows_to_arrays(rows: list[tuple[Any, ...]], fields: list[pa.Field]) -> list[pa.Array]:
    """Row tuples -> one typed Arrow array per field (the transpose runs in C)."""
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(fields)
    return [pa.array(c, type=f.type) for c, f in zip(cols, fields, strict=True)]


@dataclass
class Batch:
    """Spans as rows: a tuple of generic values and a dict of audit values each, plus each
    row's partition (tenant, hour bucket). Arrow converts both in C++ (`to_table`), which
    measured faster than appending to 63 Python lists per span."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)
    hours: list[int] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def to_table(self) -> pa.Table:
        arrays = rows_to_arrays(self.rows, GENERIC_FIELDS)
        # Audit dicts are sparse (a span fills ~8 of ~37 columns): Arrow reads them as one
        # struct array (a missing key is null) and splits it into columns.
        arrays += pa.array(self.audits, type=_AUDIT_STRUCT).flatten()
        return pa.Table.from_arrays(arrays, schema=SPANS_SCHEMA)

    @property
    def columns(self) -> dict[str, list[Any]]:
        """Column name -> values (for tests and tools; the writer uses `to_table`)."""
        return self.to_table().to_pydict()


def hour_partition(hour_bucket: int) -> tuple[str, str]:
    """(date, hour) strings of an hour bucket (start ns // 1h), UTC."""
    try:
        dt = datetime.fromtimestamp(hour_bucket * 3600, tz=UTC)
    except (OverflowError, OSError, ValueError):
        dt = datetime(9999, 12, 31, 23, tzinfo=UTC)
    return dt.strftime("%Y-%m-%d"), dt.strftime("%H")


def _span_problem(sp: Any) -> str | None:
    if len(sp.trace_id) != 16 or sp.trace_id == _ZERO_TRACE:
        return f"trace_id must be 16 non-zero bytes, got {len(sp.trace_id)} bytes"
    if len(sp.span_id) != 8 or sp.span_id == _ZERO_SPAN:
        return f"span_id must be 8 non-zero bytes, got {len(sp.span_id)} bytes"
    if len(sp.parent_span_id) not in (0, 8):
        return f"parent_span_id must be empty or 8 bytes, got {len(sp.parent_span_id)} bytes"
    # Open proto3 enums decode any int32; the columns are int8 (schema.py), and a value that
    # does not fit would fail every flush after the span was acknowledged.
    if not -128 <= sp.kind <= 127:
        return f"kind {sp.kind} is not a SpanKind"
    if not -128 <= sp.status.code <= 127:
        return f"status.code {sp.status.code} is not a StatusCode"
    return None


def append_request(batch: Batch, req: ExportTraceServiceRequest, tenant: str,
                   normalizer: Normalizer) -> None:
    """Append every valid span of a request; invalid spans are counted in batch.rejected."""
    rows, audits, tenants, hours = batch.rows, batch.audits, batch.tenants, batch.hours
    normalize = normalizer.normalize
    for rs in req.resource_spans:
        res = attrs_to_dict(rs.resource.attributes)
        res_json = _attrs_json(res)
        service = res.get("service.name")
        service = service if isinstance(service, str) else None
        res_dropped = rs.resource.dropped_attributes_count
        res_url = rs.schema_url or None
        for ss in rs.scope_spans:
            sc = ss.scope
            scope_json = _attrs_json(attrs_to_dict(sc.attributes))
            sc_name, sc_ver = sc.name or None, sc.version or None
            sc_dropped, sc_url = sc.dropped_attributes_count, ss.schema_url or None
            for sp in ss.spans:
                if (len(sp.trace_id) != 16 or len(sp.span_id) != 8
                        or len(sp.parent_span_id) not in (0, 8)
                        or sp.trace_id == _ZERO_TRACE or sp.span_id == _ZERO_SPAN
                        or not -128 <= sp.kind <= 127 or not -128 <= sp.status.code <= 127):
                    batch.rejected.append(
                        f"span {sp.span_id.hex() or '?'}: {_span_problem(sp)}")
                    continue
                attrs = attrs_to_dict(sp.attributes)
                events = [
                    {"time_unix_nano": e.time_unix_nano, "name": e.name,
                     "attributes": attrs_to_dict(e.attributes),
                     "dropped_attributes_count": e.dropped_attributes_count}
                    for e in sp.events
                ] if sp.events else []
                values, lifted = normalize(attrs, res, events, sp.status.code)
                if lifted:
                    stored = {k: ({"$col": lifted[k]} if k in lifted else v)
                              for k, v in attrs.items()}
                else:
                    stored = attrs
                links = [
                    {"trace_id": ln.trace_id.hex(), "span_id": ln.span_id.hex(),
                     "trace_state": ln.trace_state, "attributes": attrs_to_dict(ln.attributes),
                     "dropped_attributes_count": ln.dropped_attributes_count,
                     "flags": ln.flags}
                    for ln in sp.links
                ] if sp.links else None
                start = sp.start_time_unix_nano
                rows.append((
                    sp.trace_id, sp.span_id, sp.parent_span_id or None, sp.trace_state or None,
                    sp.flags, sp.name, sp.kind, start, sp.end_time_unix_nano,
                    sp.status.code, sp.status.message or None, service, res_json, res_dropped,
                    res_url, sc_name, sc_ver, scope_json, sc_dropped, sc_url,
                    _dumps(stored).decode() if stored else None, sp.dropped_attributes_count,
                    _dumps(events).decode() if events else None, sp.dropped_events_count,
                    _dumps(links).decode() if links else None, sp.dropped_links_count,
                ))
                audits.append(values)
                tenants.append(tenant)
                hours.append(start // _HOUR_NS)


AUDIT_KINDS = [(name, {pa.string(): "str", pa.int64(): "int64", pa.uint16(): "uint16",
                        pa.bool_(): "bool"}[t]) for name, t in AUDIT_COLUMNS]


def _from_buffers(field: pa.Field, n: int, nulls: int, valid: bytes | None,
                  offsets: bytes | None, data: bytes) -> pa.Array:
    buffers = [None if valid is None else pa.py_buffer(valid)]
    if offsets is not None:
        buffers.append(pa.py_buffer(offsets))
    buffers.append(pa.py_buffer(data))
    return pa.Array.from_buffers(field.type, n, buffers, null_count=nulls)


class SpanRows:
    """Serialized ExportTraceServiceRequests -> one `spans` table, by the compiled converter
    (_spanrows.c: no protobuf objects, the generic columns written straight into Arrow
    buffers, the normalizer called once per span). A request it does not read exactly like
    `append_request` (rare encodings, bytes values) goes through `append_request`, which is
    the reference: tests/store/test_spanrows.py checks both give the same rows, in order."""

    def __init__(self, normalizer: Normalizer) -> None:
        self.normalizer = normalizer
        self._fast = (_spanrows.Builder(normalizer.normalize, _dumps, AUDIT_KINDS)
                      if _spanrows is not None else None)
        # Finished parts, in request order: (table, tenants, hours).
        self._parts: list[tuple[pa.Table, list[str], list[int]]] = []
        self._rows = 0
        self._rejected: list[str] = []

    def add(self, data: bytes, tenant: str) -> list[str]:
        """Convert one request; returns its invalid spans' messages (they are not stored)."""
        if self._fast is not None:
            rejected = self._fast.rejected()
            before = len(rejected)
            if self._fast.add(data, tenant):
                return rejected[before:]
            self._finish_fast()
        batch = Batch()
        append_request(batch, ExportTraceServiceRequest.FromString(data), tenant,
                       self.normalizer)
        if len(batch):
            self._parts.append((batch.to_table(), batch.tenants, batch.hours))
            self._rows += len(batch)
        self._rejected += batch.rejected
        return batch.rejected

    def _finish_fast(self) -> None:
        """Take what the compiled converter holds (before a reference part: request order)."""
        if self._fast is None:
            return
        if not self._fast.rows() and not self._fast.rejected():
            return
        cols, tenants, hours, rejected = self._fast.finish()
        self._rejected += rejected
        if tenants:
            arrays = [_from_buffers(f, *c) for f, c in zip(SPANS_SCHEMA, cols, strict=True)]
            self._parts.append((pa.Table.from_arrays(arrays, schema=SPANS_SCHEMA), tenants,
                                hours))
            self._rows += len(tenants)

    def __len__(self) -> int:
        return self._rows + (self._fast.rows() if self._fast is not None else 0)

    def finish(self) -> tuple[pa.Table | None, list[str], list[int], list[str]]:
        """(table or None when no span was valid, each row's tenant, each row's hour bucket,
        rejected spans); starts empty again."""
        self._finish_fast()
        parts, rejected = self._parts, self._rejected
        self._parts, self._rows, self._rejected = [], 0, []
        if not parts:
            return None, [], [], rejected
        table = parts[0][0] if len(parts) == 1 else pa.concat_tables([p[0] for p in parts])
        return (table, [t for p in parts for t in p[1]], [h for p in parts for h in p[2]],
                rejected)


def build_batch(requests: Iterable[ExportTraceServiceRequest], tenant: str,
                normalizer: Normalizer) -> Batch:
    batch = Batch()
    for req in requests:
        append_request(batch, req, tenant, normalizer)
    return batch
