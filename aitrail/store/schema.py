"""The one definition of the on-disk `spans` record.

Every Parquet file carries SCHEMA_VERSION and NORMALIZER_VERSION in its key-value metadata.
The generic columns hold everything OTLP carried (lossless); the audit columns are derived by
`normalize.py` and can be recomputed with `aitrail reindex`.

Attribute maps (resource, scope, span, event, link) are JSON objects whose values keep their
OTLP types (see `anyvalue.py`). Long content columns hold JSON text without dictionary
encoding: performance.md measured dictionary pages on ids and text as the main cost of a
single-trace fetch.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1
NORMALIZER_VERSION = 1

_str = pa.string()

# Where a span or log record came from; the same columns in both datasets.
_RESOURCE_SCOPE_FIELDS: list[pa.Field] = [
    pa.field("service_name", _str),
    pa.field("resource_attributes", _str),
    pa.field("resource_dropped_attributes_count", pa.uint32()),
    pa.field("resource_schema_url", _str),
    pa.field("scope_name", _str),
    pa.field("scope_version", _str),
    pa.field("scope_attributes", _str),
    pa.field("scope_dropped_attributes_count", pa.uint32()),
    pa.field("scope_schema_url", _str),
]

GENERIC_FIELDS: list[pa.Field] = [
    pa.field("trace_id", pa.binary(16), nullable=False),
    pa.field("span_id", pa.binary(8), nullable=False),
    pa.field("parent_span_id", pa.binary(8)),
    pa.field("trace_state", _str),
    pa.field("flags", pa.uint32()),
    pa.field("name", _str),
    pa.field("kind", pa.int8()),
    pa.field("start_time_unix_nano", pa.uint64()),
    pa.field("end_time_unix_nano", pa.uint64()),
    pa.field("status_code", pa.int8()),
    pa.field("status_message", _str),
    *_RESOURCE_SCOPE_FIELDS,
    pa.field("attributes", _str),
    pa.field("dropped_attributes_count", pa.uint32()),
    pa.field("events", _str),
    pa.field("dropped_events_count", pa.uint32()),
    pa.field("links", _str),
    pa.field("dropped_links_count", pa.uint32()),
]

# Audit columns: (name, type). Order is the order of the public `spans` view.
AUDIT_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("ai_kind", _str),
    ("source_convention", _str),
    ("normalizer_version", pa.uint16()),
    ("operation", _str),
    ("provider", _str),
    ("request_model", _str),
    ("response_model", _str),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("system_instructions", _str),
    ("input_messages", _str),
    ("output_messages", _str),
    ("tool_name", _str),
    ("tool_call_id", _str),
    ("tool_arguments", _str),
    ("tool_result", _str),
    ("retrieval_query", _str),
    ("data_source", _str),
    ("documents", _str),
    ("user_id", _str),
    ("session_id", _str),
    ("agent_name", _str),
    ("decisions", _str),
    ("policy_id", _str),
    ("policy_version", _str),
    ("policy_verdict", _str),
    ("review_required", pa.bool_()),
    ("reviewer", _str),
    ("review_decision", _str),
    ("change_id", _str),
    ("change_kind", _str),
    ("change_action", _str),
    ("change_target", _str),
    ("change_url", _str),
    ("feature_flags", _str),
    ("deployment_environment", _str),
    ("error_type", _str),
    # What redaction masked in this span: JSON [{rule, class, path, fp}] (docs/redaction.md).
    ("redactions", _str),
]
AUDIT_NAMES = [n for n, _ in AUDIT_COLUMNS]

# Audit columns that may hold an attribute's string verbatim. The attribute is then stored
# once: in `attributes` its value becomes the placeholder {"$col": "<column>"} (anyvalue.py),
# which the `spans` view and `show --format otlp-json` put back. Storing content twice cost
# ~10% of bytes per span (benchmarks/ingest_file.py --columns).
LIFTABLE_CONTENT = frozenset(
    {"system_instructions", "input_messages", "output_messages", "tool_arguments",
     "tool_result", "documents"})
LIFTABLE = LIFTABLE_CONTENT | frozenset(
    {"request_model", "response_model", "tool_name", "tool_call_id", "retrieval_query",
     "data_source", "user_id", "session_id", "agent_name", "reviewer", "change_id",
     "change_kind", "change_action", "change_target", "change_url", "deployment_environment",
     "error_type"})
# A scalar shorter than this stays in place: the placeholder would cost more than it saves.
LIFT_MIN_CHARS = 24

SPANS_SCHEMA = pa.schema(GENERIC_FIELDS + [pa.field(n, t) for n, t in AUDIT_COLUMNS])
COLUMN_NAMES = SPANS_SCHEMA.names

# Low-cardinality columns keep dictionary encoding; ids and long text do not.
DICTIONARY_COLUMNS = [
    "trace_state", "name", "kind", "status_code", "service_name", "resource_attributes",
    "resource_schema_url", "scope_name", "scope_version", "scope_attributes", "scope_schema_url",
    "ai_kind", "source_convention", "normalizer_version", "operation", "provider",
    "request_model", "response_model", "tool_name", "data_source", "agent_name", "policy_id",
    "policy_version", "policy_verdict", "reviewer", "review_decision", "change_id",
    "change_kind", "change_action", "change_target", "deployment_environment", "error_type",
]

# Long text: no min/max statistics (they would prune nothing, and each page header and row
# group would carry up to two copies of a long value: 16 B/span and a 3x bigger footer).
LONG_TEXT_COLUMNS = frozenset({
    "status_message", "resource_attributes", "scope_attributes", "attributes", "events",
    "links", "system_instructions", "input_messages", "output_messages", "tool_arguments",
    "tool_result", "retrieval_query", "documents", "decisions", "feature_flags", "redactions",
    "body", "content_input", "content_output", "content_system"})

# Hive partition keys: a partition value is part of the path, not of the file.
PARTITION_KEYS = ("tenant", "date", "hour")

FILE_METADATA = {
    b"aitrail.schema_version": str(SCHEMA_VERSION).encode(),
    b"aitrail.normalizer_version": str(NORMALIZER_VERSION).encode(),
}

# -- logs --------------------------------------------------------------------------------------
# Every OTLP log record is kept (lossless, like spans). GenAI content that instrumentations
# send as log records (the <= 1.36 `gen_ai.*.message` / `gen_ai.choice` events, and the
# `gen_ai.client.inference.operation.details` record) is also extracted into the content_*
# columns, which the `spans` view joins to the span by trace and span id.
LOG_FIELDS: list[pa.Field] = [
    pa.field("trace_id", pa.binary(16)),
    pa.field("span_id", pa.binary(8)),
    pa.field("time_unix_nano", pa.uint64()),
    pa.field("observed_time_unix_nano", pa.uint64()),
    pa.field("severity_number", pa.int32()),
    pa.field("severity_text", _str),
    pa.field("event_name", _str),
    pa.field("body", _str),
    pa.field("attributes", _str),
    pa.field("dropped_attributes_count", pa.uint32()),
    pa.field("flags", pa.uint32()),
    *_RESOURCE_SCOPE_FIELDS,
    pa.field("content_input", _str),  # JSON list of OTel messages this record contributes
    pa.field("content_output", _str),
    pa.field("content_system", _str),  # JSON list of parts
    pa.field("content_complete", pa.bool_()),  # true: the whole conversation (details event)
    pa.field("normalizer_version", pa.uint16()),
]
LOGS_SCHEMA = pa.schema(LOG_FIELDS)
LOG_DICTIONARY_COLUMNS = [
    "severity_text", "event_name", "service_name", "resource_attributes", "resource_schema_url",
    "scope_name", "scope_version", "scope_attributes", "scope_schema_url",
]
