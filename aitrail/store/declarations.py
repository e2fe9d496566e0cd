"""Declared AI change records (`ai_change.yaml`): parsing, validation and their versioned log.

A team writes down, per AI feature, what it may do: model, review, allowed actions, forbidden
inputs, logging, kill switch and fallback (docs/declarations.md). `aitrail declare FILE`
records each one in `<store>/_declarations/declarations.jsonl` beside the record (never under
`spans/`), appended whole under a lock and fsync'd like the workspace files. Nothing is ever
rewritten: a new version is a new line, so the history of what was declared, when and by
whom is kept, and a finding can name the version that was in force when its span happened.

A version is the first 12 hex digits of the SHA-256 of the declaration's canonical JSON: the
same content gives the same version whatever the comments, key order or quoting.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from .errors import BadInput
from .redaction.rules import CLASSES, SECRET_CLASSES
from .workspace import _now, append_line, current_user, read_lines

DECLARATIONS_DIR = "_declarations"
DECLARATIONS_FILE = "declarations.jsonl"

# Names a declaration may use in forbidden_inputs: the redaction data classes, and group
# names a team writes (the issue's own example says `credentials`, `payment_card_data`).
INPUT_GROUPS: dict[str, tuple[str, ...]] = {
    "credentials": SECRET_CLASSES,
    "secrets": SECRET_CLASSES,
    "payment_card_data": ("payment_card",),
    "personal_data": ("email", "phone"),
}
PROMPT_LOGGING = ("stored", "stored_redacted", "not_stored")
FIELDS = ("feature", "description", "owner", "model_provider", "model", "retrieval",
          "human_review_required", "allowed_actions", "forbidden_inputs", "logging",
          "rollback")
_SUBFIELDS = {"retrieval": ("source", "permission_key"),
              "logging": ("prompts", "retention_days"),
              "rollback": ("kill_switch", "fallback")}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class DeclarationError(BadInput):
    """A declaration file that cannot be used; the message is `FILE:LINE: field: problem`."""


@dataclass(frozen=True)
class Declaration:
    """One feature's declared record, normalized (absent fields are None: not checked)."""

    feature: str
    description: str | None = None
    owner: str | None = None
    providers: tuple[str, ...] | None = None  # model_provider: one name or a list
    models: tuple[str, ...] | None = None
    retrieval_source: str | None = None
    permission_key: str | None = None
    human_review_required: bool | None = None
    allowed_actions: tuple[str, ...] | None = None
    forbidden_inputs: tuple[str, ...] | None = None
    prompts: str | None = None
    retention_days: int | None = None
    kill_switch: str | None = None
    fallback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in self.__dict__.items()}

    @property
    def forbidden_classes(self) -> tuple[str, ...] | None:
        """forbidden_inputs with group names expanded to redaction data classes."""
        if self.forbidden_inputs is None:
            return None
        out: list[str] = []
        for name in self.forbidden_inputs:
            for c in INPUT_GROUPS.get(name, (name,)):
                if c not in out:
                    out.append(c)
        return tuple(out)

    @property
    def version(self) -> str:
        canonical = orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(canonical).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Declaration:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()
                      if k in cls.__dataclass_fields__})


# -- parsing --------------------------------------------------------------------------------

class _Lines:
    """Line numbers (1-based) of each key of the composed YAML, for error messages."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.top: dict[str, int] = {}
        self.sub: dict[tuple[str, str], int] = {}
        self.values: dict[str, int] = {}
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = str(k.value)
                self.top[key] = k.start_mark.line + 1
                self.values[key] = v.start_mark.line + 1
                if isinstance(v, yaml.MappingNode):
                    for k2, _v2 in v.value:
                        self.sub[(key, str(k2.value))] = k2.start_mark.line + 1

    def of(self, field: str, sub: str | None = None) -> int:
        if sub is not None and (field, sub) in self.sub:
            return self.sub[(field, sub)]
        return self.top.get(field, 1)


def parse_declaration(text: str, source: str = "<declaration>") -> Declaration:
    """Validate one YAML declaration; raise DeclarationError naming file, line and field.

    Unknown fields are refused, not ignored: a misspelt `alowed_actions` would otherwise
    silently switch a check off.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DeclarationError(f"{source}:{line}: not valid YAML: {problem}") from None
    lines = _Lines(node)

    def fail(field: str, problem: str, sub: str | None = None) -> DeclarationError:
        name = f"{field}.{sub}" if sub else field
        return DeclarationError(f"{source}:{lines.of(field, sub)}: {name}: {problem}")

    if not isinstance(data, dict):
        raise DeclarationError(f"{source}:1: a declaration is a YAML mapping of fields "
                               f"({', '.join(FIELDS)}); see docs/declarations.md")
    for key in data:
        if key not in FIELDS:
            raise fail(str(key), f"unknown field; the fields are: {', '.join(FIELDS)}")

    def text_of(field: str, value: Any, sub: str | None = None, pattern: re.Pattern[str]
                = _NAME) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise fail(field, f"must be a name (letters, digits, _ . : / @ -), got "
                       f"{value!r}", sub)
        return value

    def names(field: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail(field, f"must be a list of names, e.g. [a, b]; got {value!r}")
        return tuple(value)

    def table(field: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise fail(field, f"must be a mapping with {', '.join(_SUBFIELDS[field])}")
        for k in value:
            if k not in _SUBFIELDS[field]:
                raise fail(field, f"unknown field; use {', '.join(_SUBFIELDS[field])}", str(k))
        return value

    if "feature" not in data:
        raise DeclarationError(f"{source}:1: feature: missing; every declaration names its "
                               "feature (the value of the spans' aitrail.feature attribute, "
                               "or of [features] in aitrail.toml)")
    out: dict[str, Any] = {"feature": text_of("feature", data["feature"])}
    for field in ("description", "owner"):
        if data.get(field) is not None:
            if not isinstance(data[field], str):
                raise fail(field, "must be text")
            out[field] = data[field]
    if data.get("model_provider") is not None:
        p = data["model_provider"]
        out["providers"] = tuple(x.lower() for x in (
            (text_of("model_provider", p),) if isinstance(p, str)
            else names("model_provider", p)))
    if data.get("model") is not None:
        m = data["model"]
        out["models"] = (text_of("model", m),) if isinstance(m, str) else names("model", m)
    if data.get("retrieval") is not None:
        r = data["retrieval"]
        if isinstance(r, str):
            out["retrieval_source"] = text_of("retrieval", r)
        else:
            r = table("retrieval", r)
            if r.get("source") is not None:
                out["retrieval_source"] = text_of("retrieval", r["source"], "source")
            if r.get("permission_key") is not None:
                out["permission_key"] = text_of("retrieval", r["permission_key"],
                                                "permission_key", _KEY)
    if data.get("human_review_required") is not None:
        if not isinstance(data["human_review_required"], bool):
            raise fail("human_review_required", "must be true or false")
        out["human_review_required"] = data["human_review_required"]
    if data.get("allowed_actions") is not None:
        out["allowed_actions"] = names("allowed_actions", data["allowed_actions"])
    if data.get("forbidden_inputs") is not None:
        fi = names("forbidden_inputs", data["forbidden_inputs"])
        known = (*INPUT_GROUPS, *CLASSES)
        for name in fi:
            if name not in known:
                raise fail("forbidden_inputs", f"unknown input class {name!r}; use one of: "
                           f"{', '.join(known)}")
        out["forbidden_inputs"] = fi
    if data.get("logging") is not None:
        lg = table("logging", data["logging"])
        if lg.get("prompts") is not None:
            if lg["prompts"] not in PROMPT_LOGGING:
                raise fail("logging", f"must be one of {', '.join(PROMPT_LOGGING)}; got "
                           f"{lg['prompts']!r}", "prompts")
            out["prompts"] = lg["prompts"]
        if lg.get("retention_days") is not None:
            days = lg["retention_days"]
            if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                raise fail("logging", f"must be a whole number of days, at least 1; got "
                           f"{days!r}", "retention_days")
            out["retention_days"] = days
    if data.get("rollback") is not None:
        rb = table("rollback", data["rollback"])
        for k in ("kill_switch", "fallback"):
            if rb.get(k) is not None:
                out[k] = text_of("rollback", rb[k], k)
    return Declaration(**out)


def read_declaration(path: Path) -> tuple[Declaration, str]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DeclarationError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}"
                               ) from None
    return parse_declaration(text, str(path)), text


# -- the versioned log -----------------------------------------------------------------------

@dataclass(frozen=True)
class Version:
    """One recorded declaration: what, which version, declared when and by whom, in force
    from when (`effective_from`, the declaration time unless backdated)."""

    declaration: Declaration
    version: str
    declared_at: datetime
    effective_from: datetime
    declared_by: str
    file: str

    @property
    def feature(self) -> str:
        return self.declaration.feature


def _time(value: str) -> datetime:
    t = datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class DeclarationLog:
    """The declarations of one store: append-only, every version kept."""

    def __init__(self, root: str | Path, user: str | None = None) -> None:
        self.path = Path(root) / DECLARATIONS_DIR / DECLARATIONS_FILE
        self.user = user or current_user()

    def versions(self) -> list[Version]:
        """Every recorded version, in the order recorded."""
        out = []
        for rec in read_lines(self.path):
            try:
                decl = Declaration.from_dict(rec["declaration"])
                out.append(Version(decl, str(rec["version"]), _time(rec["time"]),
                                   _time(rec.get("effective_from") or rec["time"]),
                                   str(rec.get("user") or "?"), str(rec.get("file") or "")))
            except (KeyError, TypeError, ValueError):
                continue  # a line this version of aitrail cannot read is not evidence
        return out

    def current(self, feature: str) -> Version | None:
        mine = [v for v in self.versions() if v.feature == feature]
        return max(mine, key=lambda v: (v.effective_from, v.declared_at)) if mine else None

    def declare(self, decl: Declaration, source_text: str, file: str,
                effective_from: datetime | None = None) -> tuple[Version, bool]:
        """Record a declaration; returns (version, recorded). A declaration identical to the
        feature's current one (same content, same effective time) is not recorded again."""
        now = _now()
        eff = effective_from.astimezone(UTC).isoformat(timespec="microseconds") \
            if effective_from else now
        cur = self.current(decl.feature)
        if cur is not None and cur.version == decl.version and (
                effective_from is None or cur.effective_from == _time(eff)):
            return cur, False
        rec = {"time": now, "user": self.user, "op": "declare", "feature": decl.feature,
               "version": decl.version, "effective_from": eff, "file": file,
               "declaration": decl.to_dict(), "source": source_text}
        append_line(self.path, rec)
        return Version(decl, decl.version, _time(now), _time(eff), self.user, file), True
