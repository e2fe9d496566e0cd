-- The findings evaluation as first written (aitrail/store/sql/findings.sql at 0b9314c),
-- kept as the reference test_findings_equivalence.py compares the optimised one with:
-- every span linked to its version by an ASOF join, every rule over that linked set,
-- every secret candidate picked by RE2. Not used by aitrail itself.

-- The `findings` view: where the stored spans differ from the declared AI change records
-- (docs/declarations.md). One pass over `_spans` (the raw columns: no attribute
-- placeholders put back, no log content joined) links each span to its feature and to the
-- declaration version in force when it started; the rules then read that narrow
-- materialized set, plus two narrow scans (reviews and landings of a change, flag
-- evaluations). Tables registered by findings.py: `_decl` (one row per recorded version),
-- `_feature_services` ([features] of aitrail.toml), `_finding_rules` (rule -> severity),
-- `_findings_now` (the time retention is judged at).

CREATE OR REPLACE MACRO _hex(b) AS lower(hex(b));
CREATE OR REPLACE MACRO _ts(ns) AS make_timestamp(CAST(ns // 1000 AS BIGINT))::TIMESTAMPTZ;
CREATE OR REPLACE MACRO _ev(t, s) AS {'trace_id': lower(hex(t)), 'span_id': lower(hex(s))};
-- A declared model matches itself and its dated snapshots (gpt-4o-2024-08-06,
-- claude-sonnet-4-5-20250929), never a sibling (gpt-4o-mini).
CREATE OR REPLACE MACRO _model_ok(m, models) AS len(list_filter(models, lambda d:
    lower(m) = lower(d) OR (starts_with(lower(m), lower(d) || '-')
        AND regexp_full_match(substr(m, length(d) + 2), '\d{4}-?\d{2}-?\d{2}')))) > 0;
-- Secret shapes that are unmistakable without the redactor's confirmations, still unmasked
-- in stored text (a masked one reads [REDACTED:...]). A cheap literal-led RE2 pass picks the
-- rare candidate, then each shape is confirmed; the AWS documentation keys (...EXAMPLE) are
-- allowed here as the redactor allows them.
CREATE OR REPLACE MACRO _secret_candidate(t) AS
    regexp_matches(t, 'PRIVATE KEY|AKIA|ASIA|gh[pousr]_|glpat-|xox[abprs]-|sk-|eyJ|://');
CREATE OR REPLACE MACRO _unmasked(t) AS list_filter([
    CASE WHEN regexp_matches(t, '-----BEGIN[ A-Z0-9_-]*PRIVATE KEY-----') THEN 'private_key' END,
    CASE WHEN len(list_filter(regexp_extract_all(t, 'A[KS]IA[0-9A-Z]{16}'),
                              lambda k: NOT suffix(k, 'EXAMPLE'))) > 0 THEN 'cloud_key' END,
    CASE WHEN regexp_matches(t, 'gh[pousr]_[A-Za-z0-9]{36}|glpat-[A-Za-z0-9_-]{20}') THEN 'vcs_token' END,
    CASE WHEN regexp_matches(t, 'xox[abprs]-[0-9A-Za-z-]{10}|sk-[A-Za-z0-9_-]{32}') THEN 'saas_token' END,
    CASE WHEN regexp_matches(t, 'eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}') THEN 'jwt' END,
    CASE WHEN regexp_matches(t, '://[^/\s:@"\\]+:[^/\s@"\\\[]{3,}@') THEN 'connection_string' END
], lambda c: c IS NOT NULL);

CREATE OR REPLACE VIEW findings AS
WITH linked AS (
    -- Text is read here, once, and only what a rule needs travels on: the secret-shape
    -- candidates' text, a retrieval's attributes, a fallback marker (carrying every
    -- span's text through the version join cost 0.4 s per 30k spans).
    SELECT s.tenant, s.trace_id, s.span_id, s.name, s.service_name, s.ai_kind,
        s.start_time_unix_nano, s.status_code, s.tool_name, s.change_id, s.change_kind,
        s.change_action, s.provider, s.request_model, s.response_model, s.redactions,
        s.data_source,
        coalesce(CASE WHEN contains(s.attributes, '"aitrail.feature"')
                      THEN json_extract_string(s.attributes, '$."aitrail.feature"') END,
                 m.feature) AS feature,
        CASE WHEN s.ai_kind IN ('retrieval', 'rerank') THEN s.attributes END AS r_attributes,
        CASE WHEN s.ai_kind IN ('retrieval', 'rerank') THEN s.documents END AS documents,
        CASE WHEN contains(s.attributes, '"aitrail.fallback"')
             THEN json_extract_string(s.attributes, '$."aitrail.fallback"') END AS fallback_of,
        (s.input_messages IS NOT NULL OR s.output_messages IS NOT NULL
            OR s.system_instructions IS NOT NULL) AS has_content,
        -- What went in (attributes, events, prompts, tool arguments), not outputs or
        -- retrieved documents: scanning every text column cost 2.3x as much (30k spans).
        CASE WHEN (m.feature IS NOT NULL OR contains(s.attributes, '"aitrail.feature"'))
                  AND (_secret_candidate(s.attributes) OR _secret_candidate(s.events)
                  OR _secret_candidate(s.input_messages)
                  OR _secret_candidate(s.system_instructions)
                  OR _secret_candidate(s.tool_arguments))
             THEN concat_ws(' ', s.attributes, s.events, s.input_messages,
                            s.system_instructions, s.tool_arguments) END AS secret_text
    FROM _spans s LEFT JOIN _feature_services m ON m.service_name = s.service_name
),
fs AS MATERIALIZED (
    SELECT l.tenant, l.trace_id, l.span_id, l.name, l.service_name, l.ai_kind,
        l.start_time_unix_nano AS start_ns, l.status_code, l.tool_name, l.change_id,
        l.change_kind, l.change_action, l.provider, l.request_model, l.response_model,
        l.redactions, l.data_source, l.feature, l.has_content, d.version, d.decl_id,
        l.start_time_unix_nano >= d.effective_ns AS in_force,
        -- Only documents that carry the permission key at all are parsed (a retrieval's
        -- documents are its largest column: parsing them all cost 3 s per 1M spans).
        CASE WHEN d.permission_key IS NOT NULL
                  AND contains(l.documents, '"' || d.permission_key || '"')
             THEN l.documents END AS documents,
        CASE WHEN d.permission_key IS NOT NULL AND l.r_attributes IS NOT NULL
                  AND contains(l.documents, '"' || d.permission_key || '"')
             THEN coalesce(
                json_extract_string(l.r_attributes, '$."' || d.permission_key || '"'),
                json_extract_string(json_extract_string(l.r_attributes, '$.metadata'),
                                    '$."' || d.permission_key || '"')) END AS scope_value,
        CASE WHEN l.secret_text IS NOT NULL AND d.scans_text
             THEN _unmasked(l.secret_text) ELSE [] END AS unmasked,
        d.fallback IS NOT NULL AND (l.name = d.fallback OR l.fallback_of = d.fallback)
            AS is_fallback
    FROM linked l ASOF JOIN _decl d
        ON l.feature = d.feature AND l.start_time_unix_nano >= d.applies_from_ns
),
-- The declared fields join back by version only where a rule reads them: carrying the
-- lists (models, allowed actions, classes) on every materialized span cost ~3 s per 1M.
fsd AS (
    SELECT fs.*, d.model_provider, d.models, d.retrieval_source, d.human_review_required,
        d.allowed_actions, d.forbidden_classes, d.prompts, d.kill_switch, d.fallback,
        d.permission_key
    FROM fs JOIN _decl d USING (decl_id)
),
actions AS (
    SELECT *, CASE WHEN ai_kind = 'tool' THEN coalesce(tool_name, name)
                   ELSE concat_ws('.', change_kind, change_action) END AS action
    FROM fsd WHERE allowed_actions IS NOT NULL AND ai_kind IN ('tool', 'change')
),
r_action AS (
    SELECT 'action_not_allowed' AS rule, tenant, feature, version, in_force, start_ns,
        change_id, _ev(trace_id, span_id) AS ev, [_ev(trace_id, span_id)] AS evidence,
        1 AS evidence_count,
        format('{} {} `{}`, which {} does not allow (allowed: {}): take the capability away, '
               'or declare it and who reviews it',
            coalesce(service_name, '?'),
            CASE WHEN ai_kind = 'tool' THEN 'called tool' ELSE 'made the change' END, action,
            feature, CASE WHEN len(allowed_actions) = 0 THEN 'nothing'
                          ELSE array_to_string(allowed_actions, ', ') END) AS explanation
    FROM actions WHERE len(list_filter(allowed_actions, lambda p: action GLOB p)) = 0
),
needs_review AS (
    SELECT tenant, change_id, feature, arg_min(version, start_ns) AS version,
        bool_and(in_force) AS in_force,
        min(start_ns) FILTER (WHERE ai_kind IN ('tool', 'change')
                              AND change_action IS NOT NULL) AS acted_ns,
        arg_min(_ev(trace_id, span_id), start_ns) FILTER (WHERE ai_kind IN ('tool', 'change')
                              AND change_action IS NOT NULL) AS acted_ev
    FROM fsd WHERE human_review_required AND change_id IS NOT NULL
    GROUP BY tenant, change_id, feature
),
change_facts AS (
    SELECT s.tenant, s.change_id,
        min(s.start_time_unix_nano) FILTER (WHERE s.ai_kind = 'change') AS landed_ns,
        arg_min(_ev(s.trace_id, s.span_id), s.start_time_unix_nano)
            FILTER (WHERE s.ai_kind = 'change') AS landed_ev,
        list(_ev(s.trace_id, s.span_id) ORDER BY s.start_time_unix_nano)
            FILTER (WHERE s.ai_kind = 'review' OR s.review_decision IS NOT NULL) AS reviews,
        min(s.start_time_unix_nano) FILTER (WHERE s.review_decision = 'approved')
            AS approved_ns,
        max(s.start_time_unix_nano) FILTER (WHERE s.review_decision = 'rejected')
            AS rejected_ns,
        arg_max(s.reviewer, s.start_time_unix_nano) FILTER (WHERE s.review_decision = 'rejected')
            AS rejected_by
    FROM _spans s
    SEMI JOIN (SELECT DISTINCT tenant, change_id FROM needs_review) n
        ON s.tenant = n.tenant AND s.change_id = n.change_id
    GROUP BY s.tenant, s.change_id
),
reviewed AS (
    SELECT n.*, coalesce(c.landed_ns, n.acted_ns) AS land_ns,
        CASE WHEN c.landed_ns IS NOT NULL THEN c.landed_ev ELSE n.acted_ev END AS land_ev,
        coalesce(c.reviews, []) AS reviews, c.approved_ns, c.rejected_ns, c.rejected_by
    FROM needs_review n LEFT JOIN change_facts c USING (tenant, change_id)
),
r_review AS (
    SELECT CASE WHEN rejected_ns IS NOT NULL AND (approved_ns IS NULL OR approved_ns < rejected_ns)
                THEN 'review_rejected'
                WHEN approved_ns IS NULL THEN 'review_missing'
                ELSE 'review_after_change' END AS rule,
        tenant, feature, version, in_force, land_ns AS start_ns, change_id, land_ev AS ev,
        [land_ev] || reviews AS evidence, 1 + len(reviews) AS evidence_count,
        CASE WHEN rejected_ns IS NOT NULL AND (approved_ns IS NULL OR approved_ns < rejected_ns)
             THEN format('change {} landed although {} rejected it, and {} requires human '
                         'review: roll it back and find how it got past the rejection',
                         change_id, coalesce(rejected_by, 'a reviewer'), feature)
             WHEN approved_ns IS NULL
             THEN format('change {} landed with no approving review{}, but {} requires human '
                         'review: have it reviewed now (or roll it back) and make the '
                         'review gate block, not log', change_id,
                         CASE WHEN len(reviews) > 0 THEN ' (only pending ones)' ELSE '' END,
                         feature)
             ELSE format('change {} landed {} s before its approving review, but {} requires '
                         'human review first: the review could not stop it; gate the change '
                         'on the approval', change_id,
                         round((approved_ns - land_ns) / 1e9, 1), feature) END AS explanation
    FROM reviewed
    WHERE land_ns IS NOT NULL
      AND (approved_ns IS NULL OR approved_ns > land_ns
           OR (rejected_ns IS NOT NULL AND approved_ns < rejected_ns))
),
r_model AS (
    SELECT 'model_not_declared' AS rule, tenant, feature, version, in_force, start_ns,
        change_id, _ev(trace_id, span_id) AS ev, [_ev(trace_id, span_id)] AS evidence,
        1 AS evidence_count,
        format('{} called model {} but {} declares {}: switch back, or declare the new model '
               'once it has been evaluated', coalesce(service_name, '?'),
            CASE WHEN request_model IS NOT NULL AND NOT _model_ok(request_model, models)
                 THEN request_model ELSE response_model END,
            feature, array_to_string(models, ', ')) AS explanation
    FROM fsd
    WHERE ai_kind = 'llm' AND models IS NOT NULL
      AND ((request_model IS NOT NULL AND NOT _model_ok(request_model, models))
           OR (response_model IS NOT NULL AND NOT _model_ok(response_model, models)))
),
r_provider AS (
    SELECT 'provider_not_declared' AS rule, tenant, feature, version, in_force, start_ns,
        change_id, _ev(trace_id, span_id) AS ev, [_ev(trace_id, span_id)] AS evidence,
        1 AS evidence_count,
        format('{} sent a {} call to provider {} but {} declares {}: find which client or '
               'fallback routes there, and declare it or remove it',
            coalesce(service_name, '?'), ai_kind, provider, feature,
            array_to_string(model_provider, ', '))
            AS explanation
    FROM fsd
    WHERE ai_kind IN ('llm', 'embedding') AND model_provider IS NOT NULL
      AND provider IS NOT NULL AND NOT list_contains(model_provider, lower(provider))
),
forbidden AS (
    SELECT *, list_sort(list_distinct(list_intersect(
        coalesce(list_transform(from_json(redactions, '[{"class": "VARCHAR"}]'),
                                lambda e: e.class), []) || unmasked,
        forbidden_classes))) AS hit
    FROM fsd
    WHERE len(forbidden_classes) > 0 AND (redactions IS NOT NULL OR len(unmasked) > 0)
),
r_forbidden AS (
    SELECT 'forbidden_input' AS rule, tenant, feature, arg_min(version, start_ns) AS version,
        bool_and(in_force) AS in_force, min(start_ns) AS start_ns,
        arg_min(change_id, start_ns) AS change_id, arg_min(_ev(trace_id, span_id), start_ns) AS ev,
        list(_ev(trace_id, span_id) ORDER BY start_ns)[1:20] AS evidence,
        count(*) AS evidence_count,
        format('{} reached {} in {} span(s) of this trace, which it declares forbidden: find '
               'how it got in, rotate what leaked and block it at the input',
            array_to_string(list_sort(list_distinct(flatten(list(hit)))), ', '), feature,
            count(*)) AS explanation
    FROM forbidden WHERE len(hit) > 0
    GROUP BY tenant, trace_id, feature
),
r_unredacted AS (
    SELECT 'content_unredacted' AS rule, tenant, feature, arg_min(version, start_ns) AS version,
        bool_and(in_force) AS in_force, min(start_ns) AS start_ns,
        arg_min(change_id, start_ns) AS change_id, arg_min(_ev(trace_id, span_id), start_ns) AS ev,
        list(_ev(trace_id, span_id) ORDER BY start_ns)[1:20] AS evidence,
        count(*) AS evidence_count,
        format('{} stored unmasked in {} span(s), but {} declares prompts stored_redacted: '
               'turn those classes on in [redaction] for this service and purge these spans',
            array_to_string(list_sort(list_distinct(flatten(list(unmasked)))), ', '),
            count(*), feature) AS explanation
    FROM fsd WHERE prompts = 'stored_redacted' AND len(unmasked) > 0
    GROUP BY tenant, trace_id, feature
),
r_stored AS (
    SELECT 'content_stored' AS rule, tenant, feature, arg_min(version, start_ns) AS version,
        bool_and(in_force) AS in_force, min(start_ns) AS start_ns,
        arg_min(change_id, start_ns) AS change_id, arg_min(_ev(trace_id, span_id), start_ns) AS ev,
        list(_ev(trace_id, span_id) ORDER BY start_ns)[1:20] AS evidence,
        count(*) AS evidence_count,
        format('prompts or outputs of {} are stored in {} span(s) although it declares '
               'prompts not_stored: turn content capture off (or [redaction] drop) for this '
               'service', feature, count(*)) AS explanation
    FROM fsd WHERE prompts = 'not_stored' AND has_content
    GROUP BY tenant, trace_id, feature
),
latest AS (
    SELECT * FROM _decl
    QUALIFY row_number() OVER (PARTITION BY feature
                               ORDER BY effective_ns DESC, declared_ns DESC) = 1
),
r_retention AS (
    SELECT 'retention_exceeded' AS rule, f.tenant, f.feature, d.version, true AS in_force,
        min(f.start_ns) AS start_ns, CAST(NULL AS VARCHAR) AS change_id,
        arg_min(_ev(f.trace_id, f.span_id), f.start_ns) AS ev,
        list(_ev(f.trace_id, f.span_id) ORDER BY f.start_ns)[1:20] AS evidence,
        count(*) AS evidence_count,
        format('{} spans of {} are older than its declared {} days (the oldest from {}): '
               'delete them, or correct logging.retention_days', count(*), f.feature,
            d.retention_days, strftime(_ts(min(f.start_ns)), '%Y-%m-%d')) AS explanation
    FROM fs f JOIN latest d ON f.feature = d.feature CROSS JOIN _findings_now n
    WHERE d.retention_days IS NOT NULL
      AND _ts(f.start_ns) < n.now - to_days(CAST(d.retention_days AS INTEGER))
    GROUP BY f.tenant, f.feature, d.version, d.retention_days
),
offs AS (
    SELECT tenant, trace_id, flag, min(start_time_unix_nano) AS off_ns,
        arg_min(span_id, start_time_unix_nano) AS off_span
    FROM (SELECT tenant, trace_id, span_id, start_time_unix_nano, f.key AS flag, f.variant,
                 f.value
          FROM (SELECT tenant, trace_id, span_id, start_time_unix_nano,
                       unnest(from_json(feature_flags,
                           '[{"key": "VARCHAR", "variant": "VARCHAR", "value": "JSON"}]')) AS f
                FROM _spans WHERE feature_flags IS NOT NULL))
    WHERE lower(variant) IN ('off', 'false', 'disabled') OR value::VARCHAR = 'false'
    GROUP BY tenant, trace_id, flag
),
r_kill AS (
    SELECT 'kill_switch_ignored' AS rule, a.tenant, a.feature,
        arg_min(a.version, a.start_ns) AS version, bool_and(a.in_force) AS in_force,
        min(a.start_ns) AS start_ns, arg_min(a.change_id, a.start_ns) AS change_id,
        arg_min(_ev(a.trace_id, a.span_id), a.start_ns) AS ev,
        ([_ev(a.trace_id, any_value(o.off_span))]
            || list(_ev(a.trace_id, a.span_id) ORDER BY a.start_ns))[1:20] AS evidence,
        1 + count(*) AS evidence_count,
        format('{} ran {} AI step(s) after its kill switch {} evaluated off in this trace: '
               'the switch does not gate this path; make it, and check what those steps did',
            a.feature, count(*), any_value(a.kill_switch)) AS explanation
    FROM fsd a JOIN offs o
        ON a.tenant = o.tenant AND a.trace_id = o.trace_id AND a.kill_switch = o.flag
       AND a.start_ns >= o.off_ns AND a.span_id <> o.off_span
    WHERE a.ai_kind IN ('llm', 'embedding', 'retrieval', 'rerank', 'tool', 'agent')
    GROUP BY a.tenant, a.trace_id, a.feature
),
errs AS (
    SELECT * FROM fsd e
    WHERE e.fallback IS NOT NULL AND e.ai_kind IN ('llm', 'embedding') AND e.status_code = 2
      AND NOT EXISTS (
        SELECT 1 FROM fs r
        WHERE r.tenant = e.tenant AND r.trace_id = e.trace_id AND r.feature = e.feature
          AND r.start_ns >= e.start_ns
          AND (r.is_fallback OR (r.ai_kind IN ('llm', 'embedding') AND r.status_code <> 2)))
),
r_fallback AS (
    SELECT 'fallback_missing' AS rule, tenant, feature, arg_min(version, start_ns) AS version,
        bool_and(in_force) AS in_force, min(start_ns) AS start_ns,
        arg_min(change_id, start_ns) AS change_id, arg_min(_ev(trace_id, span_id), start_ns) AS ev,
        list(_ev(trace_id, span_id) ORDER BY start_ns)[1:20] AS evidence,
        count(*) AS evidence_count,
        format('{} provider call(s) failed and neither a retry succeeded nor the declared '
               'fallback {} ran in this trace: the request got no answer; wire the fallback '
               'into this error path', count(*), any_value(fallback)) AS explanation
    FROM errs GROUP BY tenant, trace_id, feature
),
permission AS (
    SELECT *, list_filter(from_json(documents, '["JSON"]'), lambda doc:
        json_extract_string(doc, '$.metadata."' || permission_key || '"') IS NOT NULL
        AND json_extract_string(doc, '$.metadata."' || permission_key || '"') <> scope_value)
        AS outside
    FROM fsd
    WHERE documents IS NOT NULL AND scope_value IS NOT NULL AND json_valid(documents)
      AND json_type(documents) = 'ARRAY'
),
r_permission AS (
    SELECT 'retrieval_outside_permissions' AS rule, tenant, feature, version, in_force,
        start_ns, change_id, _ev(trace_id, span_id) AS ev, [_ev(trace_id, span_id)] AS evidence,
        1 AS evidence_count,
        format('retrieval returned {} of another {} than the request''s {}, but {} declares '
               'permissioned retrieval ({}): filter the retriever by {} and find where the '
               'documents went', array_to_string(list_transform(outside, lambda doc:
                    coalesce(json_extract_string(doc, '$.id'), '?')), ', '),
            permission_key, scope_value, feature,
            coalesce(retrieval_source, permission_key), permission_key) AS explanation
    FROM permission WHERE len(outside) > 0
),
r_source AS (
    SELECT 'retrieval_source_not_declared' AS rule, tenant, feature, version, in_force,
        start_ns, change_id, _ev(trace_id, span_id) AS ev, [_ev(trace_id, span_id)] AS evidence,
        1 AS evidence_count,
        format('{} retrieved from {} but {} declares retrieval from {}: declare the source '
               'after checking its permissions, or stop using it',
            coalesce(service_name, '?'), data_source, feature, retrieval_source) AS explanation
    FROM fsd
    WHERE ai_kind IN ('retrieval', 'rerank') AND retrieval_source IS NOT NULL
      AND data_source IS NOT NULL AND data_source <> retrieval_source
),
every AS (
    SELECT * FROM r_action
    UNION ALL BY NAME SELECT * FROM r_review
    UNION ALL BY NAME SELECT * FROM r_model
    UNION ALL BY NAME SELECT * FROM r_provider
    UNION ALL BY NAME SELECT * FROM r_forbidden
    UNION ALL BY NAME SELECT * FROM r_unredacted
    UNION ALL BY NAME SELECT * FROM r_stored
    UNION ALL BY NAME SELECT * FROM r_retention
    UNION ALL BY NAME SELECT * FROM r_kill
    UNION ALL BY NAME SELECT * FROM r_fallback
    UNION ALL BY NAME SELECT * FROM r_permission
    UNION ALL BY NAME SELECT * FROM r_source
)
SELECT e.rule, r.severity, e.tenant, e.feature, e.version, e.in_force, _ts(e.start_ns) AS time,
    e.ev.trace_id AS trace_id, e.ev.span_id AS span_id, e.change_id,
    e.evidence, CAST(e.evidence_count AS BIGINT) AS evidence_count, e.explanation
FROM every e JOIN _finding_rules r USING (rule);
