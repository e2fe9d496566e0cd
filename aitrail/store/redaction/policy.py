"""The `[redaction]` section of aitrail.toml: which classes are redacted, custom rules,
allow-lists, and per tenant / service overrides. Parsed strictly: a typo in a security setting
(`dorp = [...]`) is an error naming the field, never a silently ignored line.

    [redaction]
    classes = ["cloud_key", "vcs_token", ...]   # default: every secret class + payment_card
    allow = ["AKIAIOSFODNN7EXAMPLE"]            # literal secrets never redacted
    allow_regex = ["^sk_test_"]                 # regexes searched in a candidate secret
    allow_keys = ["k8s.pod.uid"]                # attributes never altered
    drop = []                                   # attributes removed entirely
    fingerprint_only = []                       # attributes kept only as a fingerprint

    [[redaction.rules]]
    name = "acme-session"
    pattern = 'acme_sess_[A-Za-z0-9]{32}'
    class = "custom"                             # optional

    [redaction.tenant."acme"]                    # same keys as [redaction] except rules
    [redaction.service."checkout-api"]

An item's policy is [redaction], then its tenant's table, then its service's: `classes` is
replaced by the most specific table that sets it; every list is added to.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .rules import BUILTIN_NAMES, CLASSES, DEFAULT_CLASSES

_SCOPE_KEYS = ("classes", "allow", "allow_regex", "allow_keys", "drop", "fingerprint_only")
_RULE_KEYS = ("name", "pattern", "class")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class CustomRule:
    name: str
    pattern: str
    cls: str = "custom"


@dataclass(frozen=True)
class Scope:
    """One table: [redaction], [redaction.tenant."t"] or [redaction.service."s"]."""
    classes: frozenset[str] | None = None
    allow: frozenset[str] = frozenset()
    allow_regex: tuple[str, ...] = ()
    allow_keys: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    fingerprint_only: tuple[str, ...] = ()


class KeySet:
    """Attribute keys, exact or with `*` wildcards (`gen_ai.prompt.*`)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self.exact = frozenset(p for p in patterns if "*" not in p)
        globs = [fnmatch.translate(p) for p in patterns if "*" in p]
        self._glob = re.compile("|".join(globs)) if globs else None

    def __contains__(self, key: str) -> bool:
        return key in self.exact or (self._glob is not None and self._glob.match(key) is not None)

    def __bool__(self) -> bool:
        return bool(self.patterns)


@dataclass(frozen=True)
class Effective:
    """The policy that applies to one (tenant, service)."""
    classes: frozenset[str]
    allow: frozenset[str]
    allow_regex: tuple[re.Pattern[str], ...]
    allow_keys: KeySet
    drop: KeySet
    fingerprint_only: KeySet

    def allowed(self, secret: str) -> bool:
        return secret in self.allow or any(r.search(secret) for r in self.allow_regex)


@dataclass(frozen=True)
class RedactionPolicy:
    base: Scope = field(default_factory=Scope)
    rules: tuple[CustomRule, ...] = ()
    tenants: dict[str, Scope] = field(default_factory=dict)
    services: dict[str, Scope] = field(default_factory=dict)

    @classmethod
    def from_config(cls, doc: dict[str, Any], source: str = "aitrail.toml") -> RedactionPolicy:
        """From a parsed aitrail.toml (Config.doc); no [redaction] means the defaults."""
        section = doc.get("redaction")
        if section is None:
            return cls()
        where = f"{source}: [redaction]"
        if not isinstance(section, dict):
            raise ConfigError(f"{where} must be a table")
        _no_unknown(section, (*_SCOPE_KEYS, "rules", "tenant", "service"), where)
        return cls(base=_scope(section, where), rules=_rules(section.get("rules", []), source),
                   tenants=_overrides(section, "tenant", source),
                   services=_overrides(section, "service", source))

    def effective(self, tenant: str, service: str) -> Effective:
        scopes = [self.base]
        for table, name in ((self.tenants, tenant), (self.services, service)):
            if name in table:
                scopes.append(table[name])
        classes = DEFAULT_CLASSES
        for s in scopes:
            if s.classes is not None:
                classes = s.classes

        def joined(attr: str) -> tuple[str, ...]:
            return tuple(dict.fromkeys(x for s in scopes for x in getattr(s, attr)))

        return Effective(
            classes=classes, allow=frozenset(joined("allow")),
            allow_regex=tuple(re.compile(p) for p in joined("allow_regex")),
            allow_keys=KeySet(joined("allow_keys")), drop=KeySet(joined("drop")),
            fingerprint_only=KeySet(joined("fingerprint_only")))

    def all_scopes(self) -> list[Scope]:
        return [self.base, *self.tenants.values(), *self.services.values()]


def _no_unknown(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown field {key!r}; expected one of: "
                              f"{', '.join(known)}")


def _strings(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} {key} must be a list of non-empty strings")
    return tuple(value)


def _scope(table: dict[str, Any], where: str) -> Scope:
    classes = None
    if "classes" in table:
        classes = frozenset(_strings(table, "classes", where))
        unknown = sorted(classes - set(CLASSES))
        if unknown:
            raise ConfigError(f"{where} classes: unknown data class {unknown[0]!r}; "
                              f"choose from: {', '.join(CLASSES)}")
    allow_regex = _strings(table, "allow_regex", where)
    for p in allow_regex:
        try:
            re.compile(p)
        except re.error as e:
            raise ConfigError(f"{where} allow_regex {p!r} does not compile: {e}") from None
    return Scope(classes=classes, allow=frozenset(_strings(table, "allow", where)),
                 allow_regex=allow_regex, allow_keys=_strings(table, "allow_keys", where),
                 drop=_strings(table, "drop", where),
                 fingerprint_only=_strings(table, "fingerprint_only", where))


def _rules(rules: Any, source: str) -> tuple[CustomRule, ...]:
    if not isinstance(rules, list):
        raise ConfigError(f"{source}: [[redaction.rules]] must be an array of tables")
    out: list[CustomRule] = []
    seen = set(BUILTIN_NAMES)
    for i, r in enumerate(rules, 1):
        where = f"{source}: [[redaction.rules]] #{i}"
        if not isinstance(r, dict):
            raise ConfigError(f"{where} must be a table")
        _no_unknown(r, _RULE_KEYS, where)
        name, pattern, cls = r.get("name"), r.get("pattern"), r.get("class", "custom")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(f"{where} name must be 1-64 letters, digits, '.', '_' or '-'")
        where = f"{where} ({name})"
        if name in seen:
            raise ConfigError(f"{where} name is already used by another rule")
        seen.add(name)
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"{where} pattern must be a non-empty string")
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"{where} pattern does not compile: {e}") from None
        if cls not in CLASSES:
            raise ConfigError(f"{where} class {cls!r} is not one of: {', '.join(CLASSES)}")
        out.append(CustomRule(name, pattern, cls))
    return tuple(out)


def _overrides(section: dict[str, Any], kind: str, source: str) -> dict[str, Scope]:
    tables = section.get(kind, {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: [redaction.{kind}] must be a table of tables")
    out: dict[str, Scope] = {}
    for name, table in tables.items():
        where = f'{source}: [redaction.{kind}."{name}"]'
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        _no_unknown(table, _SCOPE_KEYS, where)
        out[name] = _scope(table, where)
    return out
