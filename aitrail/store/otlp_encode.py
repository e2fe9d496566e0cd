"""Stored rows -> ExportTraceServiceRequest: the lossless way back out of the store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .anyvalue import dict_to_attrs, from_py


def _load(text: str | None) -> Any:
    return orjson.loads(text) if text else None


def span_attributes(row: dict[str, Any]) -> dict[str, Any]:
    """A row's span attributes with lifted values put back in their place."""
    attrs = _load(row["attributes"]) or {}
    for key, value in attrs.items():
        if isinstance(value, dict) and len(value) == 1 and "$col" in value:
            attrs[key] = row[value["$col"]]
    return attrs


class _Scopes:
    """The resource and scope containers of a request being rebuilt, one per distinct
    stored resource and scope (rows carry them denormalised)."""

    def __init__(self, add_resource: Any, scope_field: str) -> None:
        self.add_resource, self.scope_field = add_resource, scope_field
        self.resources: dict[tuple, Any] = {}
        self.scopes: dict[tuple, Any] = {}

    def of(self, row: dict[str, Any]) -> Any:
        rkey = (row["resource_attributes"], row["resource_dropped_attributes_count"],
                row["resource_schema_url"])
        r = self.resources.get(rkey)
        if r is None:
            r = self.resources[rkey] = self.add_resource()
            dict_to_attrs(_load(row["resource_attributes"]) or {}, r.resource.attributes)
            r.resource.dropped_attributes_count = row["resource_dropped_attributes_count"] or 0
            r.schema_url = row["resource_schema_url"] or ""
        skey = (rkey, row["scope_name"], row["scope_version"], row["scope_attributes"],
                row["scope_dropped_attributes_count"], row["scope_schema_url"])
        s = self.scopes.get(skey)
        if s is None:
            s = self.scopes[skey] = getattr(r, self.scope_field).add()
            s.scope.name = row["scope_name"] or ""
            s.scope.version = row["scope_version"] or ""
            dict_to_attrs(_load(row["scope_attributes"]) or {}, s.scope.attributes)
            s.scope.dropped_attributes_count = row["scope_dropped_attributes_count"] or 0
            s.schema_url = row["scope_schema_url"] or ""
        return s


def rows_to_request(rows: Iterable[dict[str, Any]]) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    scopes = _Scopes(req.resource_spans.add, "scope_spans")
    for row in rows:
        sp = scopes.of(row).spans.add()
        sp.trace_id = bytes(row["trace_id"])
        sp.span_id = bytes(row["span_id"])
        if row["parent_span_id"]:
            sp.parent_span_id = bytes(row["parent_span_id"])
        sp.trace_state = row["trace_state"] or ""
        sp.flags = row["flags"] or 0
        sp.name = row["name"] or ""
        sp.kind = row["kind"] or 0
        sp.start_time_unix_nano = row["start_time_unix_nano"] or 0
        sp.end_time_unix_nano = row["end_time_unix_nano"] or 0
        sp.status.code = row["status_code"] or 0
        sp.status.message = row["status_message"] or ""
        dict_to_attrs(span_attributes(row), sp.attributes)
        sp.dropped_attributes_count = row["dropped_attributes_count"] or 0
        for ev in _load(row["events"]) or ():
            e = sp.events.add()
            e.time_unix_nano = ev["time_unix_nano"]
            e.name = ev["name"]
            dict_to_attrs(ev["attributes"] or {}, e.attributes)
            e.dropped_attributes_count = ev["dropped_attributes_count"]
        sp.dropped_events_count = row["dropped_events_count"] or 0
        for ln in _load(row["links"]) or ():
            link = sp.links.add()
            link.trace_id = bytes.fromhex(ln["trace_id"])
            link.span_id = bytes.fromhex(ln["span_id"])
            link.trace_state = ln["trace_state"]
            dict_to_attrs(ln["attributes"] or {}, link.attributes)
            link.dropped_attributes_count = ln["dropped_attributes_count"]
            link.flags = ln["flags"]
        sp.dropped_links_count = row["dropped_links_count"] or 0
    return req


def log_rows_to_request(rows: Iterable[dict[str, Any]]) -> ExportLogsServiceRequest:
    """Stored log record rows -> the request that carried them (log_records.py kept every
    field; `event_name` was filled from the `event.name` attribute when the field was
    empty, so it is set only where it differs from that attribute)."""
    req = ExportLogsServiceRequest()
    scopes = _Scopes(req.resource_logs.add, "scope_logs")
    for row in rows:
        lr = scopes.of(row).log_records.add()
        if row["trace_id"]:
            lr.trace_id = bytes(row["trace_id"])
        if row["span_id"]:
            lr.span_id = bytes(row["span_id"])
        lr.time_unix_nano = row["time_unix_nano"] or 0
        lr.observed_time_unix_nano = row["observed_time_unix_nano"] or 0
        lr.severity_number = row["severity_number"] or 0
        lr.severity_text = row["severity_text"] or ""
        attrs = _load(row["attributes"]) or {}
        if row["event_name"] and attrs.get("event.name") != row["event_name"]:
            lr.event_name = row["event_name"]
        if row["body"] is not None:
            from_py(orjson.loads(row["body"]), lr.body)
        dict_to_attrs(attrs, lr.attributes)
        lr.dropped_attributes_count = row["dropped_attributes_count"] or 0
        lr.flags = row["flags"] or 0
    return req
