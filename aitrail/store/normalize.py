"""Fold every AI span convention into the audit columns of one record.

The rules are data (`mappings.py`); this module applies them. `normalize` never raises on
odd input: a value it cannot read is left to the lossless generic columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import mappings as m
from .messages import (
    doc,
    dumps,
    indexed,
    json_lenient,
    legacy_message,
    oi_documents,
    oi_message,
    openai_messages,
)
from .redaction.walk import RESERVED_KEY as REDACTIONS_KEY
from .schema import LIFT_MIN_CHARS, LIFTABLE, NORMALIZER_VERSION

Attrs = Mapping[str, Any]


def _json_member(attrs: Attrs, key: str, member: str) -> Any:
    """A member of a JSON-object string attribute (None when absent or not JSON)."""
    obj = json_lenient(attrs.get(key))
    return obj.get(member) if isinstance(obj, dict) else None


def _scalar(v: Any, col: str) -> Any:
    if v is None or v == "" or isinstance(v, (list, dict)):
        return None
    if col in m.INT_COLUMNS:
        try:
            n = int(v)
        except (TypeError, ValueError, OverflowError):
            return None
        # The columns are int64: a larger count (a string of digits, a double) would fail
        # every flush after the span was acknowledged; it stays in `attributes` as sent.
        return n if -2**63 <= n < 2**63 else None
    if col in m.BOOL_COLUMNS:
        if isinstance(v, str):
            return v.strip().lower() in ("true", "1", "yes")
        return bool(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else str(v)


# -- decisions -------------------------------------------------------------------------------


def _verdict(native: Any) -> str | None:
    if native is None:
        return None
    return m.VERDICTS.get(str(native).strip().lower())


def _decisions(attrs: Attrs, oi_kind: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for src in m.DECISION_SOURCES:
        fields: dict[str, str] = src["fields"]  # type: ignore[assignment]
        found = {f: attrs[k] for f, k in fields.items() if k in attrs}
        if not found:
            continue
        d: dict[str, Any] = {"kind": src["kind"], "source": src["source"], **found}
        d["verdict"] = _verdict(found.get("native_verdict"))
        out.append(d)
    if oi_kind == "GUARDRAIL":
        result = json_lenient(attrs.get("output.value"))
        meta = json_lenient(attrs.get("metadata"))
        meta = meta if isinstance(meta, dict) else {}
        d = {"kind": "guardrail", "source": "openinference"}
        if isinstance(result, dict):
            native = result.get("action", result.get("verdict", result.get("result")))
            if native is not None:
                d["native_verdict"] = native
            reason = result.get("actionReason", result.get("reason"))
            if reason is not None:
                d["reason"] = reason
        elif isinstance(result, str):
            d["native_verdict"] = result
        for field, key in (("policy_id", "guardrailIdentifier"),
                           ("policy_version", "guardrailVersion")):
            if meta.get(key) is not None:
                d[field] = meta[key]
        d["verdict"] = _verdict(d.get("native_verdict"))
        out.append(d)
    return out


# -- feature flags ---------------------------------------------------------------------------


def _flag(attrs: Attrs) -> dict[str, Any] | None:
    flag: dict[str, Any] = {}
    for field, keys in m.FLAG_FIELDS.items():
        for k in keys:
            if k in attrs:
                flag[field] = attrs[k]
                break
    return flag if "key" in flag else None


_TRACELOOP, _GEN_AI, _LLM_PROMPTS = 1, 2, 4
_COERCED = m.INT_COLUMNS | m.BOOL_COLUMNS
_KEY_CACHE_MAX = 100_000
_SHAPE_CACHE_MAX = 10_000


# -- the normalizer --------------------------------------------------------------------------


class Normalizer:
    """Applies the mapping tables, with a user's `[mapping]` rules tried first.

    The tables are compiled once into an index from attribute key to the columns it can fill,
    so a span costs one pass over its own keys rather than a probe per rule
    (benchmarks/ingest_file.py measured the per-rule probing as a third of ingest time).
    """

    def __init__(self, user_mapping: Mapping[str, list[str]] | None = None) -> None:
        user_mapping = user_mapping or {}
        scalar = {c: tuple(user_mapping.get(c, ())) + keys for c, keys in m.SCALAR_RULES.items()}
        content = {c: tuple(user_mapping.get(c, ())) + keys
                   for c, keys in m.CONTENT_RULES.items()}
        self.scalar_rules = scalar
        self.content_rules = content
        # Columns whose rules differ by convention: resolved by probing (few keys).
        self.convention_overrides = {
            conv: {c: tuple(user_mapping.get(c, ())) + keys for c, keys in rules.items()}
            for conv, rules in m.CONVENTION_SCALAR_RULES.items()}
        self.policy_rules = {c: tuple(user_mapping.get(c, ()))
                             for c in ("policy_id", "policy_version", "policy_verdict")}
        # key -> ((column, rank, json member or None), ...)
        index: dict[str, list[tuple[str, int, str | None]]] = {}
        for col, keys in scalar.items():
            for rank, k in enumerate(keys):
                if k in m.JSON_MEMBER_KEYS:
                    container, member = m.JSON_MEMBER_KEYS[k]
                    index.setdefault(container, []).append((col, rank, member))
                else:
                    index.setdefault(k, []).append((col, rank, None))
        self._index = {k: tuple(v) for k, v in index.items()}
        self._content_index = {k: (col, rank) for col, keys in content.items()
                               for rank, k in enumerate(keys)}
        self._decision_keys = frozenset(
            k for src in m.DECISION_SOURCES for k in src["fields"].values())  # type: ignore[union-attr]
        self._policy_keys = frozenset(k for keys in self.policy_rules.values() for k in keys)
        self._ollm_markers = frozenset(m.OPENLLMETRY_MARKERS)
        self._ollm_legacy = frozenset(m.OPENLLMETRY_LEGACY_MARKERS)
        self._resource_memo: tuple[Any, dict[str, tuple[int, Any]]] | None = None
        self._key_cache: dict[str, tuple[int, tuple, tuple[str, int] | None]] = {}
        self._shape_cache: dict[tuple[str, ...], tuple[int, dict, dict]] = {}

    def _key_info(self, k: str) -> tuple[int, tuple, tuple[str, int] | None]:
        """(namespace bits, scalar rule hits, content rule hit) of one attribute key, cached:
        keys repeat across spans, so each span costs one lookup per key."""
        info = self._key_cache.get(k)
        if info is None:
            bits = ((_TRACELOOP if k.startswith("traceloop.") else 0)
                    | (_GEN_AI if k.startswith("gen_ai.") else 0)
                    | (_LLM_PROMPTS if k.startswith("llm.prompts.") else 0))
            info = (bits, self._index.get(k, ()), self._content_index.get(k))
            if len(self._key_cache) < _KEY_CACHE_MAX:  # bounded against endless new keys
                self._key_cache[k] = info
        return info

    def _survey(self, attrs: Attrs) -> tuple[int, dict[str, tuple[float, str, str | None]],
                                              dict[str, tuple[int, str]]]:
        """Namespace bits, the best scalar rule key per column and the best content rule key
        per column: they depend only on the span's keys, and spans of one instrumentation
        repeat the same keys, so the answer is cached per key tuple (callers only read it)."""
        shape = tuple(attrs)
        hit = self._shape_cache.get(shape)
        if hit is None:
            hit = self._survey_keys(attrs)
            if len(self._shape_cache) < _SHAPE_CACHE_MAX:
                self._shape_cache[shape] = hit
        return hit

    def _survey_keys(self, attrs: Attrs) -> tuple[int, dict[str, tuple[float, str, str | None]],
                                                   dict[str, tuple[int, str]]]:
        flags = 0
        best: dict[str, tuple[float, str, str | None]] = {}
        found: dict[str, tuple[int, str]] = {}
        cache = self._key_cache
        for k in attrs:
            info = cache.get(k) or self._key_info(k)
            flags |= info[0]
            for col, rank, member in info[1]:
                cur = best.get(col)
                if cur is None or rank < cur[0]:
                    best[col] = (rank, k, member)
            chit = info[2]
            if chit is not None:
                col, rank = chit
                if col not in found or rank < found[col][0]:
                    found[col] = (rank, k)
        return flags, best, found

    def _scan(self, attrs: Attrs) -> dict[str, tuple[float, str, str | None]]:
        """Best (rank, key, member) per scalar column among the keys present."""
        best: dict[str, tuple[float, str, str | None]] = {}
        index = self._index
        for k in attrs:
            hits = index.get(k)
            if hits:
                for col, rank, member in hits:
                    cur = best.get(col)
                    if cur is None or rank < cur[0]:
                        best[col] = (rank, k, member)
        return best

    def _resolve(self, attrs: Attrs, best: dict[str, tuple[float, str, str | None]],
                 col: str) -> tuple[Any, str | None]:
        """The column's value from its best key, falling back through the rule order when
        that value is empty or of the wrong type. Returns (value, key)."""
        rank, key, member = best[col]
        v = _json_member(attrs, key, member) if member else attrs.get(key)
        if type(v) is str and v and col not in _COERCED:
            return v, key
        v = _scalar(v, col)
        if v is not None:
            return v, key
        for k in self.scalar_rules[col][int(rank) + 1:]:
            if k in m.JSON_MEMBER_KEYS:
                v = _scalar(_json_member(attrs, *m.JSON_MEMBER_KEYS[k]), col)
            else:
                v = _scalar(attrs.get(k), col)
            if v is not None:
                return v, k
        return None, None

    def _resource_values(self, resource: Attrs) -> dict[str, tuple[int, Any]]:
        """Scalar values found on the resource, memoized: every span of a resource shares
        the same dict."""
        memo = self._resource_memo
        if memo is not None and memo[0] is resource:
            return memo[1]
        values: dict[str, tuple[int, Any]] = {}
        if resource:
            best = self._scan(resource)
            for col in best:
                v, _ = self._resolve(resource, best, col)
                if v is not None:
                    values[col] = (best[col][0], v)
        self._resource_memo = (resource, values)
        return values

    def normalize(self, attrs: Attrs, resource: Attrs, events: list[dict[str, Any]],
                  status_code: int = 0) -> tuple[dict[str, Any], dict[str, str]]:
        """Audit column values for one span, and the attribute keys stored verbatim in an
        audit column ({attribute key: column}): those are kept once (see schema.LIFTABLE)."""
        out: dict[str, Any] = {}
        lifted: dict[str, str] = {}
        flags, best, found = self._survey(attrs)
        convention = self._convention(attrs, events, flags)
        oi_kind = attrs.get(m.OPENINFERENCE_MARKER)

        overrides = self.convention_overrides.get(convention) if convention else None
        for col in best:
            if overrides and col in overrides:
                continue
            v, key = self._resolve(attrs, best, col)
            if v is not None:
                out[col] = v
                if (col in LIFTABLE and isinstance(v, str) and len(v) >= LIFT_MIN_CHARS
                        and key not in lifted and attrs.get(key) is v):
                    lifted[key] = col
        if overrides:
            for col, keys in overrides.items():
                for k in keys:
                    if k in m.JSON_MEMBER_KEYS:
                        v = _scalar(_json_member(attrs, *m.JSON_MEMBER_KEYS[k]), col)
                    else:
                        v = _scalar(attrs.get(k), col)
                    if v is not None:
                        out[col] = v
                        break
        for col, (rank, v) in self._resource_values(resource).items():
            if col not in out:
                out[col] = v
            elif col in best and rank < best[col][0]:
                out[col] = v  # an earlier rule key on the resource beats a later one here
                for key in [k for k, c in lifted.items() if c == col]:
                    del lifted[key]  # the span's value is no longer in the column

        op = out.get("operation")
        if op is None:
            if oi_kind is not None:
                op = m.OPENINFERENCE_OPERATION.get(str(oi_kind).upper())
                if op == "chat" and flags & _LLM_PROMPTS:
                    op = "text_completion"
            elif "traceloop.span.kind" in attrs:
                op = m.TRACELOOP_SPAN_KIND_OPERATION.get(
                    _scalar(attrs["traceloop.span.kind"], "operation"))
            elif "llm.request.type" in attrs:
                op = m.LLM_REQUEST_TYPE_OPERATION.get(
                    _scalar(attrs["llm.request.type"], "operation"))
        if op is not None:
            out["operation"] = m.OPERATION_ALIASES.get(op, op)
        if "provider" in out:
            p = out["provider"]
            out["provider"] = m.PROVIDER_ALIASES.get(p.lower(), p.lower())

        for col, (_, k) in found.items():
            v = attrs[k]
            if isinstance(v, str) and v:
                out[col] = v
                lifted[k] = col
            elif isinstance(v, (list, dict)):
                out[col] = dumps(v)

        self._content_fallbacks(attrs, events, out, lifted, oi_kind, convention)

        has_decision = oi_kind == "GUARDRAIL" or not self._decision_keys.isdisjoint(attrs)
        decisions = _decisions(attrs, oi_kind) if has_decision else []
        if self._policy_keys and not self._policy_keys.isdisjoint(attrs):
            # A site's own policy attributes ([mapping]) make a decision like any other.
            mapped: dict[str, Any] = {"kind": "policy", "source": "mapping"}
            for col, keys in self.policy_rules.items():
                field = "native_verdict" if col == "policy_verdict" else col
                for k in keys:
                    if attrs.get(k) is not None:
                        mapped[field] = attrs[k]
                        break
            mapped["verdict"] = _verdict(mapped.get("native_verdict"))
            decisions.insert(0, mapped)
        if decisions:
            out["decisions"] = dumps(decisions)
            governing = [d for d in decisions if d["kind"] != "review"]
            ranked = [d for d in governing if d.get("verdict")]
            if ranked:
                top = min(ranked, key=lambda d: m.VERDICT_ORDER.index(d["verdict"]))
                out["policy_verdict"] = top["verdict"]
            else:  # a verdict we cannot fold still names its policy
                top = governing[0] if governing else {}
            for f in ("policy_id", "policy_version"):
                if top.get(f) is not None:
                    out[f] = str(top[f])
        if "review_decision" in out:
            out["review_decision"] = out["review_decision"].lower()

        if "change_id" not in out:
            for id_key, kind, target_keys, prefix in m.CHANGE_FALLBACKS:
                cid = attrs.get(id_key)
                if cid is None:
                    continue
                target = next((attrs[t] for t in target_keys if t in attrs),
                              next((resource[t] for t in target_keys if t in resource), None))
                out["change_id"] = f"{prefix}:{target}#{cid}" if target else f"{prefix}:{cid}"
                out.setdefault("change_kind", kind)
                if target is not None:
                    out.setdefault("change_target", str(target))
                break

        flags = []
        if m.FLAG_FIELDS["key"][0] in attrs:
            f = _flag(attrs)
            if f:
                flags.append(f)
        for ev in events:
            if ev.get("name") == m.FLAG_EVENT:
                f = _flag(ev.get("attributes") or {})
                if f:
                    flags.append(f)
        if flags:
            out["feature_flags"] = dumps(flags)

        if status_code == 2 and "error_type" not in out:
            for ev in events:
                if ev.get("name") == "exception":
                    et = (ev.get("attributes") or {}).get("exception.type")
                    if et is not None:
                        out["error_type"] = str(et)
                        break

        kind = m.OPERATION_AI_KIND.get(out.get("operation", ""))
        if kind is None:
            if "reviewer" in out or "review_decision" in out:
                kind = "review"
            elif any(d["kind"] in ("policy", "guardrail") for d in decisions):
                kind = "guardrail"
            elif "change_action" in out or ("change_kind" in out and "change_id" in out
                                            and "aitrail.change.id" not in attrs):
                kind = "change"
        if kind is not None:
            out["ai_kind"] = kind
        if convention is None and (kind is not None or "change_id" in out):
            convention = "aitrail"
        if convention is not None:
            out["source_convention"] = convention
            out["normalizer_version"] = NORMALIZER_VERSION
        # The redactor's own record (it removes one sent by a client) goes to its column.
        redactions = attrs.get(REDACTIONS_KEY)
        if type(redactions) is str:
            out["redactions"] = redactions
            lifted[REDACTIONS_KEY] = "redactions"
        return out, lifted

    def _convention(self, attrs: Attrs, events: list[dict[str, Any]],
                    flags: int | None = None) -> str | None:
        if flags is None:
            flags = self._survey(attrs)[0]
        if m.OPENINFERENCE_MARKER in attrs:
            return "openinference"
        if flags & _TRACELOOP or not self._ollm_markers.isdisjoint(attrs):
            if not self._ollm_legacy.isdisjoint(attrs) or (
                "gen_ai.system" in attrs and "gen_ai.provider.name" not in attrs
            ):
                return "openllmetry-legacy"
            return "openllmetry"
        if "gen_ai.provider.name" in attrs:
            return "otel-genai"
        if "gen_ai.system" in attrs:
            return "otel-genai-legacy"
        if flags & _GEN_AI:
            return "otel-genai"
        for ev in events:
            conv = m.EVENT_CONVENTIONS.get(ev.get("name"))
            if conv is not None:
                return conv
        return None

    @staticmethod
    def _content_fallbacks(attrs: Attrs, events: list[dict[str, Any]], out: dict[str, Any],
                           lifted: dict[str, str], oi_kind: Any, convention: str | None) -> None:
        op = out.get("operation")
        if convention == "openinference":
            if "input_messages" not in out:
                msgs = indexed(attrs, "llm.input_messages.")
                if msgs:
                    out["input_messages"] = dumps([oi_message(x) for x in msgs])
            if "output_messages" not in out:
                msgs = indexed(attrs, "llm.output_messages.")
                if msgs:
                    fr = attrs.get("llm.finish_reason")
                    out["output_messages"] = dumps([oi_message(x, fr) for x in msgs])
            if "documents" not in out:
                docs = oi_documents(attrs, "retrieval.documents.") or oi_documents(
                    attrs, "reranker.output_documents.")
                if docs:
                    out["documents"] = dumps(docs)
            if op == "retrieval" and "retrieval_query" not in out:
                q = attrs.get("input.value")
                if isinstance(q, str):
                    out["retrieval_query"] = q
            if op == "execute_tool":
                for col, key in (("tool_arguments", "input.value"),
                                 ("tool_result", "output.value")):
                    v = attrs.get(key)
                    if col not in out and isinstance(v, str) and v:
                        out[col] = v
                        lifted[key] = col
        elif convention in ("openllmetry", "openllmetry-legacy"):
            if "input_messages" not in out:
                msgs = indexed(attrs, "gen_ai.prompt.")
                if msgs:
                    out["input_messages"] = dumps([legacy_message(x) for x in msgs])
            if "output_messages" not in out:
                msgs = indexed(attrs, "gen_ai.completion.")
                if msgs:
                    out["output_messages"] = dumps([legacy_message(x) for x in msgs])
            if op == "execute_tool":
                if "tool_name" not in out and "traceloop.entity.name" in attrs:
                    out["tool_name"] = str(attrs["traceloop.entity.name"])
                for col, key in (("tool_arguments", "traceloop.entity.input"),
                                 ("tool_result", "traceloop.entity.output")):
                    v = attrs.get(key)
                    if col not in out and isinstance(v, str) and v:
                        out[col] = v
                        lifted[key] = col
            if op == "invoke_workflow" and "agent_name" not in out:
                wf = attrs.get("traceloop.workflow.name")
                if wf is not None:
                    out["agent_name"] = str(wf)
        if events:
            for ev in events:
                name = ev.get("name")
                if name in m.CONTENT_EVENTS:
                    key, col, default_role = m.CONTENT_EVENTS[name]
                    v = (ev.get("attributes") or {}).get(key)
                    if v is not None and col not in out:
                        msgs = openai_messages(v) or []
                        for x in msgs:
                            if x.get("role") is None and default_role is not None:
                                x["role"] = default_role
                        out[col] = dumps(msgs)
            if "documents" not in out:
                docs = []
                for ev in events:
                    prefix = m.DOCUMENT_EVENTS.get(ev.get("name"))
                    if prefix:
                        a = ev.get("attributes") or {}
                        docs.append(doc(a.get(f"{prefix}.id"), a.get(f"{prefix}.score"),
                                         a.get(f"{prefix}.document"), a.get(f"{prefix}.metadata"),
                                         distance=a.get(f"{prefix}.distance")))
                if docs:
                    out["documents"] = dumps(docs)
                    out.setdefault("operation", m.DOCUMENT_EVENT_OPERATION)
