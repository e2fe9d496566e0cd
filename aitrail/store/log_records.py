"""ExportLogsServiceRequest -> rows of the `logs` record. Every record is kept as sent; GenAI
content events also get their messages extracted (normalize.log_content)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from .anyvalue import attrs_to_dict, to_py
from .messages import log_content
from .records import rows_to_arrays
from .schema import LOGS_SCHEMA, NORMALIZER_VERSION

_HOUR_NS = 3_600_000_000_000
_dumps = orjson.dumps


def _json(d: Any) -> str | None:
    return _dumps(d).decode() if d else None


def log_problem(lr: Any) -> str | None:
    if len(lr.trace_id) not in (0, 16):
        return f"trace_id must be empty or 16 bytes, got {len(lr.trace_id)} bytes"
    if len(lr.span_id) not in (0, 8):
        return f"span_id must be empty or 8 bytes, got {len(lr.span_id)} bytes"
    return None


@dataclass
class LogBatch:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    tenants: list[str] = field(default_factory=list)
    hours: list[int] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def to_table(self) -> pa.Table:
        return pa.Table.from_arrays(rows_to_arrays(self.rows, list(LOGS_SCHEMA)),
                                    schema=LOGS_SCHEMA)


def append_logs_request(batch: LogBatch, req: ExportLogsServiceRequest, tenant: str) -> None:
    for rl in req.resource_logs:
        res = attrs_to_dict(rl.resource.attributes)
        res_json = _json(res)
        service = res.get("service.name")
        service = service if isinstance(service, str) else None
        for sl in rl.scope_logs:
            sc = sl.scope
            scope_json = _json(attrs_to_dict(sc.attributes))
            for lr in sl.log_records:
                problem = log_problem(lr)
                if problem:
                    batch.rejected.append(f"log record: {problem}")
                    continue
                attrs = attrs_to_dict(lr.attributes)
                body = to_py(lr.body) if lr.HasField("body") else None
                event = lr.event_name or attrs.get("event.name")
                event = event if isinstance(event, str) else None
                c_in, c_out, c_sys, complete = log_content(event or "", attrs, body)
                when = lr.time_unix_nano or lr.observed_time_unix_nano
                batch.rows.append((
                    lr.trace_id or None, lr.span_id or None, lr.time_unix_nano,
                    lr.observed_time_unix_nano, lr.severity_number, lr.severity_text or None,
                    event, None if body is None else _dumps(body).decode(), _json(attrs),
                    lr.dropped_attributes_count, lr.flags, service, res_json,
                    rl.resource.dropped_attributes_count, rl.schema_url or None,
                    sc.name or None, sc.version or None, scope_json,
                    sc.dropped_attributes_count, sl.schema_url or None,
                    c_in, c_out, c_sys, complete if event else None,
                    NORMALIZER_VERSION if (c_in or c_out or c_sys) else None,
                ))
                batch.tenants.append(tenant)
                batch.hours.append(when // _HOUR_NS)
