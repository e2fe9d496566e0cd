-- The public views: a contract documented in docs/schema.md. `_spans` and `_logs` are the
-- raw tables (binary ids, nanosecond integers, attribute placeholders), created by query.py.

-- GenAI content that arrived as log records, per span: a details record carries the whole
-- conversation; per-message events are put together in time order.
CREATE OR REPLACE VIEW _log_content AS
SELECT tenant, trace_id, span_id,
    coalesce(
        arg_max(content_input, time_unix_nano) FILTER (WHERE content_complete AND content_input IS NOT NULL),
        to_json(flatten(list(from_json(content_input, '["JSON"]') ORDER BY time_unix_nano, observed_time_unix_nano)
            FILTER (WHERE NOT content_complete AND content_input IS NOT NULL)))::VARCHAR) AS log_input,
    coalesce(
        arg_max(content_output, time_unix_nano) FILTER (WHERE content_complete AND content_output IS NOT NULL),
        to_json(flatten(list(from_json(content_output, '["JSON"]') ORDER BY time_unix_nano, observed_time_unix_nano)
            FILTER (WHERE NOT content_complete AND content_output IS NOT NULL)))::VARCHAR) AS log_output,
    arg_max(content_system, time_unix_nano) FILTER (WHERE content_system IS NOT NULL) AS log_system
FROM _logs
WHERE span_id IS NOT NULL
  AND (content_input IS NOT NULL OR content_output IS NOT NULL OR content_system IS NOT NULL)
GROUP BY tenant, trace_id, span_id;

-- The spans projection is also instantiated by query.py over a filtered source (one trace
-- from the files the trace index names; one change), so a lookup filters the raw binary ids
-- (row-group stats prune) before any JSON is built: {spans_source} is _spans here.
CREATE OR REPLACE VIEW spans AS
SELECT
    s.tenant,
    lower(hex(s.trace_id)) AS trace_id,
    lower(hex(s.span_id)) AS span_id,
    lower(hex(parent_span_id)) AS parent_span_id,
    name,
    CASE kind WHEN 0 THEN 'unspecified' WHEN 1 THEN 'internal' WHEN 2 THEN 'server'
        WHEN 3 THEN 'client' WHEN 4 THEN 'producer' WHEN 5 THEN 'consumer'
        ELSE CAST(kind AS VARCHAR) END AS kind,
    service_name,
    make_timestamp(CAST(start_time_unix_nano // 1000 AS BIGINT))::TIMESTAMPTZ AS start_time,
    make_timestamp(CAST(end_time_unix_nano // 1000 AS BIGINT))::TIMESTAMPTZ AS end_time,
    (CAST(end_time_unix_nano AS HUGEINT) - start_time_unix_nano) / 1e6 AS duration_ms,
    CASE status_code WHEN 0 THEN 'unset' WHEN 1 THEN 'ok' WHEN 2 THEN 'error'
        ELSE CAST(status_code AS VARCHAR) END AS status_code,
    status_message,
    scope_name,
    scope_version,
    resource_attributes::JSON AS resource,
    {attributes_expr}::JSON AS attributes,
    events::JSON AS events,
    links::JSON AS links,
    ai_kind,
    source_convention,
    normalizer_version,
    operation,
    provider,
    request_model,
    response_model,
    input_tokens,
    output_tokens,
    coalesce(system_instructions, log_system) AS system_instructions,
    coalesce(input_messages, log_input) AS input_messages,
    coalesce(output_messages, log_output) AS output_messages,
    tool_name,
    tool_call_id,
    tool_arguments,
    tool_result,
    retrieval_query,
    data_source,
    documents,
    user_id,
    session_id,
    agent_name,
    decisions::JSON AS decisions,
    policy_id,
    policy_version,
    policy_verdict,
    review_required,
    reviewer,
    review_decision,
    change_id,
    change_kind,
    change_action,
    change_target,
    change_url,
    feature_flags::JSON AS feature_flags,
    deployment_environment,
    error_type,
    redactions::JSON AS redactions
FROM {spans_source} s
LEFT JOIN _log_content c
    ON c.tenant = s.tenant AND c.trace_id = s.trace_id AND c.span_id = s.span_id;

CREATE OR REPLACE VIEW logs AS
SELECT tenant,
    lower(hex(trace_id)) AS trace_id,
    lower(hex(span_id)) AS span_id,
    make_timestamp(CAST(coalesce(nullif(time_unix_nano, 0), observed_time_unix_nano) // 1000
                        AS BIGINT))::TIMESTAMPTZ AS time,
    severity_number,
    severity_text,
    event_name,
    service_name,
    body::JSON AS body,
    attributes::JSON AS attributes,
    resource_attributes::JSON AS resource,
    scope_name,
    scope_version,
    content_input AS input_messages,
    content_output AS output_messages,
    content_system AS system_instructions
FROM _logs;

CREATE OR REPLACE VIEW ai_calls AS
SELECT * FROM spans WHERE ai_kind IN ('llm', 'embedding');

CREATE OR REPLACE VIEW documents AS
WITH d AS (
    SELECT tenant, trace_id, span_id, service_name, start_time, data_source,
        unnest(range(1, json_array_length(documents)::BIGINT + 1)) AS rank,
        unnest(from_json(documents, '["JSON"]')) AS doc
    FROM spans
    WHERE documents IS NOT NULL AND json_valid(documents) AND json_type(documents) = 'ARRAY'
)
SELECT tenant, trace_id, span_id, service_name, start_time,
    CAST(rank AS INTEGER) AS rank,
    doc->>'id' AS document_id,
    coalesce(doc->>'source', doc->'metadata'->>'source', doc->>'uri',
             doc->'metadata'->>'url', data_source) AS source,
    TRY_CAST(doc->>'score' AS DOUBLE) AS score,
    doc->>'content' AS content,
    sha256(doc->>'content') AS content_sha256,
    doc->'metadata' AS metadata
FROM d;

CREATE OR REPLACE VIEW decisions AS
WITH d AS (
    SELECT tenant, trace_id, span_id, service_name, start_time, change_id,
        unnest(range(1, json_array_length(decisions)::BIGINT + 1)) AS position,
        unnest(from_json(decisions, '["JSON"]')) AS dec
    FROM spans
    WHERE decisions IS NOT NULL
)
SELECT tenant, trace_id, span_id, service_name, start_time, change_id,
    CAST(position AS INTEGER) AS position,
    dec->>'kind' AS kind,
    dec->>'source' AS source,
    dec->>'component' AS component,
    dec->>'policy_id' AS policy_id,
    dec->>'policy_version' AS policy_version,
    dec->>'rule' AS rule,
    dec->>'verdict' AS verdict,
    dec->>'native_verdict' AS native_verdict,
    dec->>'action' AS action,
    dec->>'reason' AS reason,
    dec->>'actor' AS actor
FROM d;

CREATE OR REPLACE VIEW changes AS
SELECT tenant, change_id,
    list(DISTINCT change_kind ORDER BY change_kind) FILTER (WHERE change_kind IS NOT NULL) AS kinds,
    list(DISTINCT change_action ORDER BY change_action) FILTER (WHERE change_action IS NOT NULL) AS actions,
    list(DISTINCT change_target ORDER BY change_target) FILTER (WHERE change_target IS NOT NULL) AS targets,
    list(DISTINCT trace_id ORDER BY trace_id) AS traces,
    list(DISTINCT service_name ORDER BY service_name) FILTER (WHERE service_name IS NOT NULL) AS services,
    min(start_time) AS first_seen,
    max(end_time) AS last_seen,
    list(DISTINCT policy_verdict ORDER BY policy_verdict) FILTER (WHERE policy_verdict IS NOT NULL) AS verdicts,
    list(DISTINCT reviewer ORDER BY reviewer) FILTER (WHERE reviewer IS NOT NULL) AS reviewers,
    list(DISTINCT review_decision ORDER BY review_decision) FILTER (WHERE review_decision IS NOT NULL) AS review_decisions,
    count(*) FILTER (WHERE status_code = 'error') AS errors,
    count(*) AS spans
FROM spans
WHERE change_id IS NOT NULL
GROUP BY tenant, change_id;
