"""The Redactor: masks secrets in decoded OTLP requests in place, before the WAL sees them.

The request path: one hyperscan scan of the request's bytes (`matcher`); a clean request ends
there. On a hit, the resources, scopes and items whose bytes hit are walked, and only the
rules that hit are confirmed with `re` on each string (`rules`). Each item that lost something
gets an `aitrail.redactions` attribute listing {rule, class, path, fp}.

Fail closed: any failure inside is raised as RedactionError, and the caller stores nothing.
"""

from __future__ import annotations

import logging
import os
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ..errors import ConfigError, StoreError
from . import rules as R
from .keys import KeyFileError, load_or_create_key
from .matcher import Matcher, RegionKey, WireError, compile_check, regions
from .policy import Effective, RedactionPolicy
from .walk import RESERVED_KEY, Walk

log = logging.getLogger("aitrail.redaction")


class RedactionError(StoreError):
    """The redactor failed: nothing of the request may be stored (retryable, 503)."""


@dataclass(frozen=True)
class _Shape:
    groups: str
    scopes: str
    items: str
    walk_item: str


_TRACES = _Shape("resource_spans", "scope_spans", "spans", "_walk_span")
_LOGS = _Shape("resource_logs", "scope_logs", "log_records", "_walk_log")


class Redactor:
    """One per store (thread-safe). `policy` is RedactionPolicy.from_config(config.doc)."""

    def __init__(self, store_root: str | os.PathLike[str],
                 policy: RedactionPolicy | None = None) -> None:
        self.policy = policy or RedactionPolicy()
        try:
            self._key = load_or_create_key(store_root)
        except (OSError, KeyFileError) as e:
            raise RedactionError(f"redaction key: {e}") from e
        enabled: set[str] = set()
        for scope in self.policy.all_scopes():
            enabled |= scope.classes if scope.classes is not None else R.DEFAULT_CLASSES
        rules = [r for r in (*R.BUILTIN, *map(_custom_rule, self.policy.rules))
                 if r.cls in enabled]
        self._rules = rules
        patterns = [r.prefilter for r in rules]
        self._sensitive_id = len(patterns) if R.SENSITIVE_KEY_CLASS in enabled else -1
        if self._sensitive_id >= 0:
            patterns.append(R.SENSITIVE_KEY_PREFILTER)
        # Policy keys (drop, fingerprint_only) and our reserved attribute: their longest
        # literal piece marks the items to walk even when no secret rule hits.
        self._force_walk = False
        for lit in self._key_literals():
            if lit:
                patterns.append(re.escape(lit))
            else:
                self._force_walk = True  # a key pattern of wildcards only
        self._matcher = _matcher(tuple(patterns))
        self._effective: dict[tuple[str | None, str | None], Effective] = {}
        log.info("redaction: %d rules over classes %s; %d custom, %d tenant and %d service "
                 "overrides", len(rules), ",".join(sorted(enabled)), len(self.policy.rules),
                 len(self.policy.tenants), len(self.policy.services))

    def _key_literals(self) -> Iterable[str]:
        yield RESERVED_KEY
        for scope in self.policy.all_scopes():
            for key in (*scope.drop, *scope.fingerprint_only):
                yield max(key.split("*"), key=len)

    # -- API ------------------------------------------------------------------------------------

    def redact_traces(self, req: ExportTraceServiceRequest, tenant: str,
                      raw: bytes | None = None) -> int:
        """Mask secrets in `req` in place; returns the number of redactions. `raw`, if given,
        must be the exact bytes `req` was parsed from (saves re-serializing it)."""
        return self._guarded(req, tenant, raw, _TRACES)[0]

    def redact_logs(self, req: ExportLogsServiceRequest, tenant: str,
                    raw: bytes | None = None) -> int:
        """Like redact_traces, for log records (bodies and attributes)."""
        return self._guarded(req, tenant, raw, _LOGS)[0]

    def redact_traces_raw(self, req: ExportTraceServiceRequest, tenant: str,
                          raw: bytes) -> bytes | None:
        """Like redact_traces, for a caller that stores the bytes it received instead of
        serializing `req` again: returns `raw` if it may still be stored, or None if `req`
        must be serialized (something was masked, or looked like a secret somewhere the walk
        may not have seen).

        Bytes that looked like a secret but were not masked need not be in `req` at all: a
        field sent twice keeps only its last value when parsed, and the first may hold a
        secret that only the received bytes still carry. So `raw` is kept after a hit only
        if each item that hit serializes back to exactly its bytes in `raw`."""
        _, clean = self._guarded(req, tenant, raw, _TRACES)
        return raw if clean else None

    def redact_logs_raw(self, req: ExportLogsServiceRequest, tenant: str,
                        raw: bytes) -> bytes | None:
        """Like redact_traces_raw, for log records."""
        _, clean = self._guarded(req, tenant, raw, _LOGS)
        return raw if clean else None

    def _guarded(self, req: Any, tenant: str, raw: bytes | None,
                 shape: _Shape) -> tuple[int, bool]:
        try:
            return self._redact(req, tenant, raw, shape)
        except RedactionError:
            raise
        except Exception as e:
            log.exception("redaction failed; the request is refused")
            raise RedactionError(f"redaction failed ({type(e).__name__}): the request was not "
                                 "stored; retry later") from e

    # -- where to look -----------------------------------------------------------------------

    def _candidates(self, data: bytes) -> tuple[dict[RegionKey, set[int]] | None,
                                                dict[RegionKey, tuple[int, int]]]:
        """Pattern ids that hit, per region (None means "walk everything": bytes that are
        not the expected layout), and the byte range of each item region that hit."""
        ends = self._matcher.ends(data)
        if not ends and ends is not None and not self._force_walk:
            return {}, {}
        try:
            spans = regions(data)
        except (WireError, IndexError):
            return None, {}
        out: dict[RegionKey, set[int]] = {}
        where: dict[RegionKey, tuple[int, int]] = {}
        if self._force_walk:
            out.update((key, set()) for key, _, _ in spans if key[0] == "i")
        if ends is None:  # too many matches to place one by one
            for key, start, end in spans:
                hit = self._matcher.scan(data[start:end])
                if hit:
                    out.setdefault(key, set()).update(hit)
                    where[key] = (start, end)
            return out, where
        starts = [start for _, start, _ in spans]
        for end, pattern_id in ends:
            n = bisect_right(starts, end - 1) - 1  # the region holding the match's last byte
            if n >= 0 and end <= spans[n][2]:
                key, start, stop = spans[n]
                out.setdefault(key, set()).add(pattern_id)
                where[key] = (start, stop)
        return out, where

    def _redact(self, req: Any, tenant: str, raw: bytes | None,
                shape: _Shape) -> tuple[int, bool]:
        """(redactions, whether the request's bytes may still be stored: nothing masked, and
        every prefilter hit in an item whose bytes are exactly what was parsed and walked)."""
        data = raw if raw is not None else req.SerializeToString()
        cand, where = self._candidates(data)
        if cand == {}:
            return 0, True
        # The bytes may still be stored if every hit is in an item that, once nothing in it
        # was masked, serializes back to exactly the bytes that hit (checked below): the
        # walk then saw all of them. A hit elsewhere (a resource, a scope, stray top-level
        # bytes) serializes the request again. On the benchmark load, ids with long digit
        # runs hit the payment card prefilter in 84% of requests, and serializing them
        # again cost 1.9 us/span.
        clean = cand is not None and all(key[0] == "i" for key, ids in cand.items() if ids)
        hit_items: list[tuple[Any, tuple[int, int]]] = []
        everything = set(range(len(self._rules) + 1))
        total = 0
        if cand is None or ("q",) in cand:
            req.DiscardUnknownFields()  # top-level bytes no field of ours holds
        walk_item = getattr(self, shape.walk_item)
        for i, group in enumerate(getattr(req, shape.groups)):
            eff = self._policy_for(tenant, _service(group.resource))
            shared: list[dict[str, Any]] = []
            ids = everything if cand is None else cand.get(("r", i))
            if ids is not None:
                w = self._walk(ids, eff)
                w.attrs(group.resource.attributes, "resource.attributes", top=True)
                w.field(group, "schema_url", "resource.schema_url")
                w.unknown(group, "resource")
                shared += w.entries
            for j, sg in enumerate(getattr(group, shape.scopes)):
                scope_entries: list[dict[str, Any]] = []
                ids = everything if cand is None else cand.get(("s", i, j))
                if ids is not None:
                    w = self._walk(ids, eff)
                    sc = sg.scope
                    w.field(sc, "name", "scope.name")
                    w.field(sc, "version", "scope.version")
                    w.attrs(sc.attributes, "scope.attributes", top=True)
                    w.field(sg, "schema_url", "scope.schema_url")
                    w.unknown(sg, "scope")
                    scope_entries = w.entries
                total += len(scope_entries)
                items = getattr(sg, shape.items)
                inherited = shared + scope_entries
                if cand is None or inherited:
                    todo = range(len(items))
                else:  # only the items that hit (most of a request's items, usually none)
                    todo = sorted(k[3] for k in cand if k[0] == "i" and k[1:3] == (i, j))
                for k in todo:
                    item = items[k]
                    ids = everything if cand is None else cand.get(("i", i, j, k))
                    own: list[dict[str, Any]] = []
                    if ids is not None:
                        w = self._walk(ids, eff)
                        walk_item(w, item)
                        w.unknown(item, "item")
                        own = w.entries
                        total += len(own)
                        if ids and clean:
                            hit_items.append((item, where[("i", i, j, k)]))
                    if inherited or own:
                        kv = item.attributes.add(key=RESERVED_KEY)
                        kv.value.string_value = orjson.dumps(inherited + own).decode()
            total += len(shared)
        if total or not clean:
            return total, False
        # A field sent twice keeps only its last value when parsed (or unknown fields moved):
        # the first may hold a secret only the received bytes carry.
        return 0, all(item.SerializeToString() == data[a:b] for item, (a, b) in hit_items)

    def _walk(self, ids: set[int], eff: Effective) -> Walk:
        return Walk(self._key, self._rules, self._sensitive_id, ids, eff)

    @staticmethod
    def _walk_span(w: Walk, span: Any) -> None:
        w.field(span, "name", "name")
        w.field(span, "trace_state", "trace_state")
        w.attrs(span.attributes, "attributes", top=True)
        for n, ev in enumerate(span.events):
            w.field(ev, "name", f"events[{n}].name")
            w.attrs(ev.attributes, f"events[{n}].attributes", top=True)
        for n, link in enumerate(span.links):
            w.field(link, "trace_state", f"links[{n}].trace_state")
            w.attrs(link.attributes, f"links[{n}].attributes", top=True)
        if span.HasField("status"):
            w.field(span.status, "message", "status.message")

    @staticmethod
    def _walk_log(w: Walk, record: Any) -> None:
        if record.HasField("body"):
            w.value(record.body, "body")
        w.attrs(record.attributes, "attributes", top=True)
        w.field(record, "severity_text", "severity_text")
        w.field(record, "event_name", "event_name")

    def _policy_for(self, tenant: str, service: str | None) -> Effective:
        key = (tenant if tenant in self.policy.tenants else None,
               service if service in self.policy.services else None)
        eff = self._effective.get(key)
        if eff is None:
            eff = self._effective[key] = self.policy.effective(key[0] or "", key[1] or "")
        return eff


@lru_cache(maxsize=8)
def _matcher(patterns: tuple[str, ...]) -> Matcher:
    """Compiling ~70 patterns twice takes ~0.5 s; stores with the same rules share it (a
    Matcher is thread-safe)."""
    return Matcher(patterns)


def _service(resource: Any) -> str | None:
    for kv in resource.attributes:
        if kv.key == "service.name":
            return kv.value.string_value
    return None


def _custom_rule(c: Any) -> R.Rule:
    prefilter = R.strip_assertions(c.pattern)
    problem = compile_check(prefilter)
    if problem:
        raise ConfigError(f"[[redaction.rules]] {c.name}: pattern {c.pattern!r} cannot be "
                          f"scanned by hyperscan ({problem}); back-references are not supported")
    compiled = re.compile(c.pattern, re.ASCII)
    return R.Rule(c.name, c.cls, compiled, prefilter, priority=R.SPECIFIC)
