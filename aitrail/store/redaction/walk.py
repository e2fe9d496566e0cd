"""One walk over a resource, scope or item whose bytes hit: applies the policy (drop,
fingerprint_only, allow_keys), confirms the rules that hit on each string, replaces secrets,
and collects the redaction entries (with JSON paths for strings holding JSON)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from . import rules as R
from .keys import fingerprint
from .policy import Effective

RESERVED_KEY = "aitrail.redactions"


class Walk:
    """The entries of one resource, scope or item; its methods mask in place."""

    def __init__(self, key: bytes, rules: Sequence[R.Rule], sensitive_id: int, ids: set[int],
                 eff: Effective) -> None:
        """`ids`: the prefilter ids that hit here (a rule's index in `rules`, or
        `sensitive_id` for secret-named attribute keys)."""
        self.key = key
        self.eff = eff
        self.rules = [rules[i] for i in sorted(ids) if i < len(rules)
                      and rules[i].cls in eff.classes]
        self.sensitive = sensitive_id in ids and R.SENSITIVE_KEY_CLASS in eff.classes
        self.entries: list[dict[str, Any]] = []

    def _entry(self, rule: str, cls: str, path: str, fp: str | None) -> None:
        self.entries.append({"rule": rule, "class": cls, "path": path, "fp": fp})

    # -- strings ------------------------------------------------------------------------------

    def field(self, msg: Any, name: str, path: str) -> None:
        old = getattr(msg, name)
        new = self.text(old, path)
        if new is not old:
            setattr(msg, name, new)

    def text(self, s: str, path: str) -> str:
        """`s` with every confirmed secret replaced by [REDACTED:rule:fp]."""
        if not s or not self.rules:
            return s
        found = self._find(s)
        if not found:
            return s
        parts: list[str] = []
        masks: list[tuple[str, list[tuple[R.Rule, str]]]] = []  # marker, its (rule, fp)s
        pos = 0
        for start, end, hits in found:
            fps: list[tuple[R.Rule, str]] = []
            for rule, secret in hits:
                fp = fingerprint(self.key, rule.fingerprint_text(secret))
                if all(fp != f for _, f in fps):  # one secret seen by two rules: one entry
                    fps.append((rule, fp))
            marker = f"[REDACTED:{fps[0][0].name}:{fps[0][1]}]"
            parts += (s[pos:start], marker)
            masks.append((marker, fps))
            pos = end
        parts.append(s[pos:])
        new = "".join(parts)
        if s.lstrip()[:1] in ("{", "["):
            placed = self._json(s, new, masks, path)
            if placed is not None:
                return placed
        for _, fps in masks:
            for rule, fp in fps:
                self._entry(rule.name, rule.cls, path, fp)
        return new

    def _find(self, s: str) -> list[tuple[int, int, list[tuple[R.Rule, str]]]]:
        """(start, end, hits) of each mask. Overlapping hits share one mask that covers them
        all, named by the first; each keeps its own secret, so its fingerprint is the same
        as wherever that secret appears alone (a URL password followed by `@host` also reads
        as an e-mail address)."""
        hits = [(start, rule.priority, start - end, end, rule)
                for rule in self.rules for start, end, secret in rule.find(s)
                if not self.eff.allowed(secret)]
        hits.sort(key=lambda h: h[:4])
        merged: list[tuple[int, int, list[tuple[R.Rule, str]]]] = []
        for start, _, _, end, rule in hits:
            if merged and start < merged[-1][1]:  # overlap: one mask covers both
                s0, e0, found = merged[-1]
                merged[-1] = (s0, max(e0, end), [*found, (rule, s[start:end])])
            else:
                merged.append((start, end, [(rule, s[start:end])]))
        return merged

    def _json(self, old: str, new: str, masks: list[tuple[str, list[tuple[R.Rule, str]]]],
              path: str) -> str | None:
        """Entries with JSON paths for a string holding JSON. Returns the string to keep, or
        None when `old` is not JSON (plain text)."""
        try:
            doc = orjson.loads(new)
        except orjson.JSONDecodeError:
            try:
                doc = orjson.loads(old)
            except orjson.JSONDecodeError:
                return None
            # A mask broke the JSON (a match across a string's end): redact value by value.
            return orjson.dumps(self._json_values(doc, path)).decode()
        found: list[tuple[str, str]] = []  # (marker, path) in document order
        for p, text in _json_strings(doc, path):
            found += ((m, p) for m in R.MARKER.findall(text))
        for marker, fps in masks:
            at = next((n for n, (m, _) in enumerate(found) if m == marker), None)
            where = found.pop(at)[1] if at is not None else path
            for rule, fp in fps:
                self._entry(rule.name, rule.cls, where, fp)
        return new

    def _json_values(self, doc: Any, path: str) -> Any:
        if isinstance(doc, str):
            return self.text(doc, path)
        if isinstance(doc, list):
            return [self._json_values(x, f"{path}[{n}]") for n, x in enumerate(doc)]
        if isinstance(doc, dict):
            return {self.text(k, f"{path}.{k}"): self._json_values(v, f"{path}.{k}")
                    for k, v in doc.items()}
        return doc

    # -- values and attributes ----------------------------------------------------------------

    def value(self, v: AnyValue, path: str) -> None:
        which = v.WhichOneof("value")
        if which == "string_value":
            self.field(v, "string_value", path)
        elif which == "bytes_value":
            old = v.bytes_value.decode("utf-8", "surrogateescape")
            new = self.text(old, path)
            if new is not old:
                v.bytes_value = new.encode("utf-8", "surrogateescape")
        elif which == "array_value":
            for n, x in enumerate(v.array_value.values):
                self.value(x, f"{path}[{n}]")
        elif which == "kvlist_value":
            self.attrs(v.kvlist_value.values, path, top=False)

    def attrs(self, kvs: Any, prefix: str, top: bool) -> None:
        """Attributes (top=True: an item's, a resource's, an event's...) or a kvlist."""
        doomed: list[int] = []
        eff = self.eff
        for n, kv in enumerate(kvs):
            key = kv.key
            path = f"{prefix}.{key}"
            if top:
                if key == RESERVED_KEY:  # ours to write; a client's copy is not evidence
                    doomed.append(n)
                    continue
                if eff.drop and key in eff.drop:
                    doomed.append(n)
                    self._entry("dropped", "policy", path, None)
                    continue
                if eff.fingerprint_only and key in eff.fingerprint_only:
                    self._fingerprint_only(kv, path)
                    continue
                if eff.allow_keys and key in eff.allow_keys:
                    continue
            new_key = self.text(key, path)
            if new_key is not key:
                kv.key = new_key
                path = f"{prefix}.{new_key}"
            if self.sensitive and R.SENSITIVE_KEY.search(key):
                self._sensitive(kv.value, path)
            else:
                self.value(kv.value, path)
        for n in reversed(doomed):
            del kvs[n]

    def _fingerprint_only(self, kv: KeyValue, path: str) -> None:
        v = kv.value
        if v.WhichOneof("value") == "string_value":
            if R.placeholder(v.string_value):
                return
            fp = fingerprint(self.key, v.string_value)
        else:
            fp = fingerprint(self.key, v.SerializeToString(deterministic=True).hex())
        v.Clear()
        v.string_value = f"[REDACTED:fingerprint:{fp}]"
        self._entry("fingerprint", "policy", path, fp)

    def _sensitive(self, v: AnyValue, path: str) -> None:
        """A value under a secret-named key: every string in it is the secret."""
        which = v.WhichOneof("value")
        if which == "string_value":
            s = v.string_value
            if s and not self.eff.allowed(s) and not R.placeholder(s):
                fp = fingerprint(self.key, s)
                v.string_value = f"[REDACTED:{R.SENSITIVE_KEY_RULE}:{fp}]"
                self._entry(R.SENSITIVE_KEY_RULE, R.SENSITIVE_KEY_CLASS, path, fp)
        elif which == "array_value":
            for n, x in enumerate(v.array_value.values):
                self._sensitive(x, f"{path}[{n}]")
        else:
            self.value(v, path)

    def unknown(self, msg: Any, path: str) -> None:
        """Fields this protobuf version does not know can hold strings no walk sees; in a
        region that hit, they go (the Parquet record never kept them anyway). Recursive: a
        resource's or scope's message includes its items."""
        before = msg.ByteSize()
        msg.DiscardUnknownFields()
        if msg.ByteSize() != before:
            self._entry("unknown-fields", "policy", path, None)


def _json_strings(doc: Any, path: str) -> Iterable[tuple[str, str]]:
    """(path, string) of every key and string value in a JSON document, in document order."""
    if isinstance(doc, str):
        yield path, doc
    elif isinstance(doc, list):
        for n, x in enumerate(doc):
            yield from _json_strings(x, f"{path}[{n}]")
    elif isinstance(doc, dict):
        for k, v in doc.items():
            p = f"{path}.{k}"
            yield p, k
            yield from _json_strings(v, p)
