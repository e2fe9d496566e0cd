-- The `findings` view: where the stored spans differ from the declared AI change records
-- (docs/declarations.md). Tables registered by findings.py: `_decl` (one row per recorded
-- version), `_feature_services` ([features] of aitrail.toml), `_finding_rules` (rule ->
-- severity), `_findings_now` (the time retention is judged at).
--
-- Shape, for speed (benchmarks/findings.py, 1M spans): ONE scan of `_spans` reads only the
-- raw columns the rules need (no attribute placeholders put back, no log content joined, no
-- retrieved documents) and keeps a narrow row per span that belongs to a declared feature,
-- or that is evidence for one (a change's reviews and landings, flag evaluations). Each span
-- is linked to its version by a hash join on the feature plus the version's time interval
-- (an ASOF join sorted the million rows with their payload: 10 CPU-s). Every rule then
-- reads that materialized set; declared lists join back by version only where a rule reads
-- them, checks that cost per row (globs, model-name regexes) run once per distinct value,
-- and span ids become hex only in the findings.

CREATE OR REPLACE MACRO _hex(b) AS lower(hex(b));
CREATE OR REPLACE MACRO _ts(ns) AS make_timestamp(CAST(ns // 1000 AS BIGINT))::TIMESTAMPTZ;
CREATE OR REPLACE MACRO _ev(t, s) AS {'trace_id': lower(hex(t)), 'span_id': lower(hex(s))};
-- The order evidence is listed in: by start time, ties broken by the ids so that the first
-- evidence span is also the finding's main span, whatever the scan order.
CREATE OR REPLACE MACRO _key(ns, t, s) AS {'ns': ns, 't': t, 's': s};
-- A declared model matches itself and its dated snapshots (gpt-4o-2024-08-06,
-- claude-sonnet-4-5-20250929), never a sibling (gpt-4o-mini).
CREATE OR REPLACE MACRO _model_ok(m, models) AS len(list_filter(models, lambda d:
    lower(m) = lower(d) OR (starts_with(lower(m), lower(d) || '-')
        AND regexp_full_match(substr(m, length(d) + 2), '\d{4}-?\d{2}-?\d{2}')))) > 0;
-- Secret shapes that are unmistakable without the redactor's confirmations, still unmasked
-- in stored text (a masked one reads [REDACTED:...]). A cheap literal pass picks the rare
-- candidate (secret_shapes.CANDIDATES: RE2 here, hyperscan in findings.py), then each shape
-- is confirmed; the AWS documentation keys (...EXAMPLE) are allowed as the redactor allows.
CREATE OR REPLACE MACRO _secret_candidate(t) AS regexp_matches(t, '{secret_candidates}');
CREATE OR REPLACE MACRO _unmasked(t) AS list_filter([
    CASE WHEN regexp_matches(t, '-----BEGIN[ A-Z0-9_-]*PRIVATE KEY-----') THEN 'private_key' END,
    CASE WHEN len(list_filter(regexp_extract_all(t, 'A[KS]IA[0-9A-Z]{16}'),
                              lambda k: NOT suffix(k, 'EXAMPLE'))) > 0 THEN 'cloud_key' END,
    CASE WHEN regexp_matches(t, 'gh[pousr]_[A-Za-z0-9]{36}|glpat-[A-Za-z0-9_-]{20}') THEN 'vcs_token' END,
    CASE WHEN regexp_matches(t, 'xox[abprs]-[0-9A-Za-z-]{10}|sk-[A-Za-z0-9_-]{32}') THEN 'saas_token' END,
    CASE WHEN regexp_matches(t, 'eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}') THEN 'jwt' END,
    CASE WHEN regexp_matches(t, '://[^/\s:@"\\]+:[^/\s@"\\\[]{3,}@') THEN 'connection_string' END
], lambda c: c IS NOT NULL);

-- Each version applies from `applies_from_ns` until the next version of its feature does;
-- of two versions applying from the same instant, the later-declared one.
CREATE OR REPLACE VIEW _decl_span AS
SELECT decl_id, feature, applies_from_ns,
    lead(applies_from_ns) OVER (PARTITION BY feature
                                ORDER BY applies_from_ns, declared_ns, decl_id) AS until_ns
FROM _decl;

-- One scan of `_spans`, narrow: a row per span of a declared feature (`only_feature`, if
-- not NULL, narrows that to one feature: its findings are the same, they read no other
-- feature's spans), and per span that is evidence for one (a change's reviews and landings,
-- flag evaluations). The text the secret-shape scan reads travels on only for spans of
-- features that scan it; findings.py scans it with hyperscan, the view below with RE2.
-- A column no recorded version needs is not read at all: findings.py writes FALSE for
-- `{reads_text}` when no version forbids inputs or declares prompts stored_redacted (the
-- text is ~560 MB per 1M spans), and for `{reads_content}` when none declares not_stored.
CREATE OR REPLACE MACRO _findings_facts(only_feature) AS TABLE
WITH linked AS (
    SELECT s.tenant, s.trace_id, s.span_id, s.name, s.service_name, s.ai_kind,
        s.start_time_unix_nano AS start_ns, s.status_code, s.tool_name, s.change_id,
        s.change_kind, s.change_action, s.provider, s.request_model, s.response_model,
        s.redactions, s.data_source, s.review_decision, s.reviewer, s.feature_flags,
        s.attributes, s.events, s.input_messages, s.system_instructions, s.tool_arguments,
        {reads_content} AND (s.input_messages IS NOT NULL OR s.output_messages IS NOT NULL
            OR s.system_instructions IS NOT NULL) AS has_content,
        coalesce(CASE WHEN contains(s.attributes, '"aitrail.feature"')
                      THEN json_extract_string(s.attributes, '$."aitrail.feature"') END,
                 m.feature) AS feature
    FROM _spans s LEFT JOIN _feature_services m ON m.service_name = s.service_name
)
SELECT l.tenant, l.trace_id, l.span_id, l.name, l.service_name, l.ai_kind, l.start_ns,
    l.status_code, l.tool_name, l.change_id, l.change_kind, l.change_action, l.provider,
    l.request_model, l.response_model, l.redactions, l.data_source, l.review_decision,
    l.reviewer, l.feature_flags, l.has_content, v.decl_id, d.version,
    CASE WHEN v.decl_id IS NOT NULL THEN l.feature END AS feature,
    l.start_ns >= d.effective_ns AS in_force,
    -- The request's scope of a permissioned retrieval, from its attributes; its documents
    -- (a retrieval's largest column, 485 MB per 1M spans) are read later, and only for the
    -- spans that have one.
    CASE WHEN d.permission_key IS NOT NULL AND l.ai_kind IN ('retrieval', 'rerank')
         THEN coalesce(
            json_extract_string(l.attributes, '$."' || d.permission_key || '"'),
            json_extract_string(json_extract_string(l.attributes, '$.metadata'),
                                '$."' || d.permission_key || '"')) END AS scope_value,
    d.fallback IS NOT NULL AND (l.name = d.fallback
        OR (contains(l.attributes, '"aitrail.fallback"')
            AND json_extract_string(l.attributes, '$."aitrail.fallback"') = d.fallback))
        AS is_fallback,
    -- What went in (attributes, events, prompts, tool arguments), not outputs or retrieved
    -- documents: scanning every text column cost 2.3x as much (30k spans).
    CASE WHEN {reads_text} AND d.scans_text THEN l.attributes END AS text_attributes,
    CASE WHEN {reads_text} AND d.scans_text THEN l.events END AS text_events,
    CASE WHEN {reads_text} AND d.scans_text THEN l.input_messages END AS text_input,
    CASE WHEN {reads_text} AND d.scans_text THEN l.system_instructions END AS text_system,
    CASE WHEN {reads_text} AND d.scans_text THEN l.tool_arguments END AS text_tool
FROM linked l
LEFT JOIN _decl_span v ON v.feature = l.feature AND l.start_ns >= v.applies_from_ns
    AND (v.until_ns IS NULL OR l.start_ns < v.until_ns)
    AND (only_feature IS NULL OR v.feature = only_feature)
LEFT JOIN _decl d ON d.decl_id = v.decl_id
WHERE v.decl_id IS NOT NULL OR l.change_id IS NOT NULL OR l.feature_flags IS NOT NULL;

-- `{fx}` is the facts with `unmasked` (the secret classes found) in place of the text:
-- findings.py puts the RE2 scan here for the view, and its hyperscan result when it
-- evaluates (the same shapes confirmed by _unmasked; RE2 picking the candidates cost
-- ~1.8 CPU-s per 1M spans, hyperscan ~0.2).
CREATE OR REPLACE VIEW findings AS
WITH fx AS MATERIALIZED ({fx}),
-- the spans of declared features
fs AS (SELECT * FROM fx WHERE decl_id IS NOT NULL),
actions AS (
    SELECT *, CASE WHEN ai_kind = 'tool' THEN coalesce(tool_name, name)
                   ELSE concat_ws('.', change_kind, change_action) END AS action
    FROM fs WHERE ai_kind IN ('tool', 'change')
),
action_denied AS (
    SELECT a.decl_id, a.action, d.allowed_actions
    FROM (SELECT DISTINCT decl_id, action FROM actions) a JOIN _decl d USING (decl_id)
    WHERE d.allowed_actions IS NOT NULL
      AND len(list_filter(d.allowed_actions, lambda p: a.action GLOB p)) = 0
),
r_action AS (
    SELECT 'action_not_allowed' AS rule, a.tenant, a.feature, a.version, a.in_force,
        a.start_ns, a.change_id, _ev(a.trace_id, a.span_id) AS ev,
        [_ev(a.trace_id, a.span_id)] AS evidence, 1 AS evidence_count,
        format('{} {} `{}`, which {} does not allow (allowed: {}): take the capability away, '
               'or declare it and who reviews it',
            coalesce(a.service_name, '?'),
            CASE WHEN a.ai_kind = 'tool' THEN 'called tool' ELSE 'made the change' END,
            a.action, a.feature, CASE WHEN len(x.allowed_actions) = 0 THEN 'nothing'
                                      ELSE array_to_string(x.allowed_actions, ', ') END)
            AS explanation
    FROM actions a JOIN action_denied x
        ON x.decl_id = a.decl_id AND x.action IS NOT DISTINCT FROM a.action
),
needs_review AS (
    SELECT f.tenant, f.change_id, f.feature,
        arg_min(f.version, _key(f.start_ns, f.trace_id, f.span_id)) AS version,
        bool_and(f.in_force) AS in_force,
        min(f.start_ns) FILTER (WHERE f.ai_kind IN ('tool', 'change')
                                AND f.change_action IS NOT NULL) AS acted_ns,
        arg_min(_ev(f.trace_id, f.span_id), _key(f.start_ns, f.trace_id, f.span_id))
            FILTER (WHERE f.ai_kind IN ('tool', 'change') AND f.change_action IS NOT NULL)
            AS acted_ev
    FROM fs f JOIN _decl d USING (decl_id)
    WHERE d.human_review_required AND f.change_id IS NOT NULL
    GROUP BY f.tenant, f.change_id, f.feature
),
change_facts AS (
    SELECT s.tenant, s.change_id,
        min(s.start_ns) FILTER (WHERE s.ai_kind = 'change') AS landed_ns,
        arg_min(_ev(s.trace_id, s.span_id), _key(s.start_ns, s.trace_id, s.span_id))
            FILTER (WHERE s.ai_kind = 'change') AS landed_ev,
        list(_ev(s.trace_id, s.span_id) ORDER BY s.start_ns, s.trace_id, s.span_id)
            FILTER (WHERE s.ai_kind = 'review' OR s.review_decision IS NOT NULL) AS reviews,
        min(s.start_ns) FILTER (WHERE s.review_decision = 'approved') AS approved_ns,
        max(s.start_ns) FILTER (WHERE s.review_decision = 'rejected') AS rejected_ns,
        arg_max(s.reviewer, _key(s.start_ns, s.trace_id, s.span_id))
            FILTER (WHERE s.review_decision = 'rejected') AS rejected_by
    FROM fx s
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
model_calls AS (
    SELECT * FROM fs WHERE ai_kind = 'llm'
),
model_denied AS (
    SELECT m.decl_id, m.request_model, m.response_model, d.models,
        CASE WHEN m.request_model IS NOT NULL AND NOT _model_ok(m.request_model, d.models)
             THEN m.request_model ELSE m.response_model END AS shown
    FROM (SELECT DISTINCT decl_id, request_model, response_model FROM model_calls) m
    JOIN _decl d USING (decl_id)
    WHERE d.models IS NOT NULL
      AND ((m.request_model IS NOT NULL AND NOT _model_ok(m.request_model, d.models))
           OR (m.response_model IS NOT NULL AND NOT _model_ok(m.response_model, d.models)))
),
r_model AS (
    SELECT 'model_not_declared' AS rule, c.tenant, c.feature, c.version, c.in_force,
        c.start_ns, c.change_id, _ev(c.trace_id, c.span_id) AS ev,
        [_ev(c.trace_id, c.span_id)] AS evidence, 1 AS evidence_count,
        format('{} called model {} but {} declares {}: switch back, or declare the new model '
               'once it has been evaluated', coalesce(c.service_name, '?'), x.shown,
            c.feature, array_to_string(x.models, ', ')) AS explanation
    FROM model_calls c JOIN model_denied x
        ON x.decl_id = c.decl_id AND x.request_model IS NOT DISTINCT FROM c.request_model
       AND x.response_model IS NOT DISTINCT FROM c.response_model
),
r_provider AS (
    SELECT 'provider_not_declared' AS rule, f.tenant, f.feature, f.version, f.in_force,
        f.start_ns, f.change_id, _ev(f.trace_id, f.span_id) AS ev,
        [_ev(f.trace_id, f.span_id)] AS evidence, 1 AS evidence_count,
        format('{} sent a {} call to provider {} but {} declares {}: find which client or '
               'fallback routes there, and declare it or remove it',
            coalesce(f.service_name, '?'), f.ai_kind, f.provider, f.feature,
            array_to_string(d.model_provider, ', ')) AS explanation
    FROM fs f JOIN _decl d USING (decl_id)
    WHERE f.ai_kind IN ('llm', 'embedding') AND d.model_provider IS NOT NULL
      AND f.provider IS NOT NULL AND NOT list_contains(d.model_provider, lower(f.provider))
),
forbidden AS (
    SELECT f.*, list_sort(list_distinct(list_intersect(
        coalesce(list_transform(from_json(f.redactions, '[{"class": "VARCHAR"}]'),
                                lambda e: e.class), []) || f.unmasked,
        d.forbidden_classes))) AS hit
    FROM fs f JOIN _decl d USING (decl_id)
    WHERE len(d.forbidden_classes) > 0 AND (f.redactions IS NOT NULL OR len(f.unmasked) > 0)
),
r_forbidden AS (
    SELECT 'forbidden_input' AS rule, tenant, feature,
        arg_min(version, _key(start_ns, trace_id, span_id)) AS version,
        bool_and(in_force) AS in_force, min(start_ns) AS start_ns,
        arg_min(change_id, _key(start_ns, trace_id, span_id)) AS change_id,
        arg_min(_ev(trace_id, span_id), _key(start_ns, trace_id, span_id)) AS ev,
        list(_ev(trace_id, span_id) ORDER BY start_ns, trace_id, span_id)[1:20] AS evidence,
        count(*) AS evidence_count,
        format('{} reached {} in {} span(s) of this trace, which it declares forbidden: find '
               'how it got in, rotate what leaked and block it at the input',
            array_to_string(list_sort(list_distinct(flatten(list(hit)))), ', '), feature,
            count(*)) AS explanation
    FROM forbidden WHERE len(hit) > 0
    GROUP BY tenant, trace_id, feature
),
r_unredacted AS (
    SELECT 'content_unredacted' AS rule, f.tenant, f.feature,
        arg_min(f.version, _key(f.start_ns, f.trace_id, f.span_id)) AS version,
        bool_and(f.in_force) AS in_force, min(f.start_ns) AS start_ns,
        arg_min(f.change_id, _key(f.start_ns, f.trace_id, f.span_id)) AS change_id,
        arg_min(_ev(f.trace_id, f.span_id), _key(f.start_ns, f.trace_id, f.span_id)) AS ev,
        list(_ev(f.trace_id, f.span_id) ORDER BY f.start_ns, f.trace_id, f.span_id)[1:20]
            AS evidence,
        count(*) AS evidence_count,
        format('{} stored unmasked in {} span(s), but {} declares prompts stored_redacted: '
               'turn those classes on in [redaction] for this service and purge these spans',
            array_to_string(list_sort(list_distinct(flatten(list(f.unmasked)))), ', '),
            count(*), f.feature) AS explanation
    FROM fs f JOIN _decl d USING (decl_id)
    WHERE d.prompts = 'stored_redacted' AND len(f.unmasked) > 0
    GROUP BY f.tenant, f.trace_id, f.feature
),
r_stored AS (
    SELECT 'content_stored' AS rule, f.tenant, f.feature,
        arg_min(f.version, _key(f.start_ns, f.trace_id, f.span_id)) AS version,
        bool_and(f.in_force) AS in_force, min(f.start_ns) AS start_ns,
        arg_min(f.change_id, _key(f.start_ns, f.trace_id, f.span_id)) AS change_id,
        arg_min(_ev(f.trace_id, f.span_id), _key(f.start_ns, f.trace_id, f.span_id)) AS ev,
        list(_ev(f.trace_id, f.span_id) ORDER BY f.start_ns, f.trace_id, f.span_id)[1:20]
            AS evidence,
        count(*) AS evidence_count,
        format('prompts or outputs of {} are stored in {} span(s) although it declares '
               'prompts not_stored: turn content capture off (or [redaction] drop) for this '
               'service', f.feature, count(*)) AS explanation
    FROM fs f JOIN _decl d USING (decl_id)
    WHERE d.prompts = 'not_stored' AND f.has_content
    GROUP BY f.tenant, f.trace_id, f.feature
),
-- Retention is judged by each feature's current version: spans that started before the
-- instant `retention_days` before `now` (compared in microseconds, as _ts() reads them).
kept_until AS (
    SELECT feature, version, retention_days,
        epoch_us(n.now - to_days(CAST(retention_days AS INTEGER))) AS before_us
    FROM (SELECT * FROM _decl
          QUALIFY row_number() OVER (PARTITION BY feature
                                     ORDER BY effective_ns DESC, declared_ns DESC) = 1)
    CROSS JOIN _findings_now n
    WHERE retention_days IS NOT NULL
),
r_retention AS (
    SELECT 'retention_exceeded' AS rule, f.tenant, f.feature, d.version, true AS in_force,
        min(f.start_ns) AS start_ns, CAST(NULL AS VARCHAR) AS change_id,
        -- the 20 oldest by a bounded top-n, not a sorted list of every old span
        list_transform(arg_min({'t': f.trace_id, 's': f.span_id},
                               _key(f.start_ns, f.trace_id, f.span_id), 20),
                       lambda e: _ev(e.t, e.s)) AS evidence,
        count(*) AS evidence_count,
        format('{} spans of {} are older than its declared {} days (the oldest from {}): '
               'delete them, or correct logging.retention_days', count(*), f.feature,
            d.retention_days, strftime(_ts(min(f.start_ns)), '%Y-%m-%d')) AS explanation
    FROM fs f JOIN kept_until d ON f.feature = d.feature
    WHERE CAST(f.start_ns // 1000 AS BIGINT) < d.before_us
    GROUP BY f.tenant, f.feature, d.version, d.retention_days
),
offs AS (
    SELECT tenant, trace_id, flag, min(start_ns) AS off_ns,
        arg_min(span_id, _key(start_ns, trace_id, span_id)) AS off_span
    FROM (SELECT tenant, trace_id, span_id, start_ns, f.key AS flag, f.variant, f.value
          FROM (SELECT tenant, trace_id, span_id, start_ns,
                       unnest(from_json(feature_flags,
                           '[{"key": "VARCHAR", "variant": "VARCHAR", "value": "JSON"}]')) AS f
                FROM fx WHERE feature_flags IS NOT NULL))
    WHERE lower(variant) IN ('off', 'false', 'disabled') OR value::VARCHAR = 'false'
    GROUP BY tenant, trace_id, flag
),
r_kill AS (
    SELECT 'kill_switch_ignored' AS rule, a.tenant, a.feature,
        arg_min(a.version, _key(a.start_ns, a.trace_id, a.span_id)) AS version,
        bool_and(a.in_force) AS in_force, min(a.start_ns) AS start_ns,
        arg_min(a.change_id, _key(a.start_ns, a.trace_id, a.span_id)) AS change_id,
        arg_min(_ev(a.trace_id, a.span_id), _key(a.start_ns, a.trace_id, a.span_id)) AS ev,
        ([_ev(a.trace_id, any_value(o.off_span))]
            || list(_ev(a.trace_id, a.span_id) ORDER BY a.start_ns, a.trace_id, a.span_id)
           )[1:20] AS evidence,
        1 + count(*) AS evidence_count,
        format('{} ran {} AI step(s) after its kill switch {} evaluated off in this trace: '
               'the switch does not gate this path; make it, and check what those steps did',
            a.feature, count(*), any_value(d.kill_switch)) AS explanation
    FROM fs a JOIN _decl d USING (decl_id) JOIN offs o
        ON a.tenant = o.tenant AND a.trace_id = o.trace_id AND d.kill_switch = o.flag
       AND a.start_ns >= o.off_ns AND a.span_id <> o.off_span
    WHERE a.ai_kind IN ('llm', 'embedding', 'retrieval', 'rerank', 'tool', 'agent')
    GROUP BY a.tenant, a.trace_id, a.feature
),
errs AS (
    SELECT e.*, d.fallback FROM fs e JOIN _decl d USING (decl_id)
    WHERE d.fallback IS NOT NULL AND e.ai_kind IN ('llm', 'embedding') AND e.status_code = 2
      AND NOT EXISTS (
        SELECT 1 FROM fs r
        WHERE r.tenant = e.tenant AND r.trace_id = e.trace_id AND r.feature = e.feature
          AND r.start_ns >= e.start_ns
          AND (r.is_fallback OR (r.ai_kind IN ('llm', 'embedding') AND r.status_code <> 2)))
),
r_fallback AS (
    SELECT 'fallback_missing' AS rule, tenant, feature,
        arg_min(version, _key(start_ns, trace_id, span_id)) AS version,
        bool_and(in_force) AS in_force, min(start_ns) AS start_ns,
        arg_min(change_id, _key(start_ns, trace_id, span_id)) AS change_id,
        arg_min(_ev(trace_id, span_id), _key(start_ns, trace_id, span_id)) AS ev,
        list(_ev(trace_id, span_id) ORDER BY start_ns, trace_id, span_id)[1:20] AS evidence,
        count(*) AS evidence_count,
        format('{} provider call(s) failed and neither a retry succeeded nor the declared '
               'fallback {} ran in this trace: the request got no answer; wire the fallback '
               'into this error path', count(*), any_value(fallback)) AS explanation
    FROM errs GROUP BY tenant, trace_id, feature
),
-- The documents of the retrievals that stated a scope, read by a second, joined scan.
-- `{read_documents}` is FALSE when findings.py saw no such retrieval: DuckDB then skips the
-- scan, which it otherwise runs over every retrieval's documents (1.5 CPU-s per 1M spans).
-- A span stored twice (a client retry) has the same documents, hence DISTINCT.
scoped AS (
    SELECT f.*, d.permission_key, d.retrieval_source
    FROM fs f JOIN _decl d USING (decl_id) WHERE f.scope_value IS NOT NULL
),
scoped_docs AS (
    SELECT DISTINCT s.tenant, s.trace_id, s.span_id, s.start_time_unix_nano AS start_ns,
        s.documents
    FROM _spans s
    SEMI JOIN scoped p ON s.tenant = p.tenant AND s.trace_id = p.trace_id
        AND s.span_id = p.span_id
    WHERE {read_documents} AND s.documents IS NOT NULL AND s.ai_kind IN ('retrieval', 'rerank')
),
permission AS (
    SELECT p.*, list_filter(from_json(x.documents, '["JSON"]'), lambda doc:
        json_extract_string(doc, '$.metadata."' || p.permission_key || '"') IS NOT NULL
        AND json_extract_string(doc, '$.metadata."' || p.permission_key || '"')
            <> p.scope_value) AS outside
    FROM scoped p JOIN scoped_docs x
        ON x.tenant = p.tenant AND x.trace_id = p.trace_id AND x.span_id = p.span_id
       AND x.start_ns = p.start_ns
    WHERE contains(x.documents, '"' || p.permission_key || '"') AND json_valid(x.documents)
      AND json_type(x.documents) = 'ARRAY'
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
    SELECT 'retrieval_source_not_declared' AS rule, f.tenant, f.feature, f.version,
        f.in_force, f.start_ns, f.change_id, _ev(f.trace_id, f.span_id) AS ev,
        [_ev(f.trace_id, f.span_id)] AS evidence, 1 AS evidence_count,
        format('{} retrieved from {} but {} declares retrieval from {}: declare the source '
               'after checking its permissions, or stop using it',
            coalesce(f.service_name, '?'), f.data_source, f.feature, d.retrieval_source)
            AS explanation
    FROM fs f JOIN _decl d USING (decl_id)
    WHERE f.ai_kind IN ('retrieval', 'rerank') AND d.retrieval_source IS NOT NULL
      AND f.data_source IS NOT NULL AND f.data_source <> d.retrieval_source
),
every AS (
    SELECT * FROM r_action
    UNION ALL BY NAME SELECT * FROM r_review
    UNION ALL BY NAME SELECT * FROM r_model
    UNION ALL BY NAME SELECT * FROM r_provider
    UNION ALL BY NAME SELECT * FROM r_forbidden
    UNION ALL BY NAME SELECT * FROM r_unredacted
    UNION ALL BY NAME SELECT * FROM r_stored
    UNION ALL BY NAME SELECT *, evidence[1] AS ev FROM r_retention
    UNION ALL BY NAME SELECT * FROM r_kill
    UNION ALL BY NAME SELECT * FROM r_fallback
    UNION ALL BY NAME SELECT * FROM r_permission
    UNION ALL BY NAME SELECT * FROM r_source
)
SELECT e.rule, r.severity, e.tenant, e.feature, e.version, e.in_force, _ts(e.start_ns) AS time,
    e.ev.trace_id AS trace_id, e.ev.span_id AS span_id, e.change_id,
    e.evidence, CAST(e.evidence_count AS BIGINT) AS evidence_count, e.explanation
FROM every e JOIN _finding_rules r USING (rule);
