"""aitrail.toml: where the store is and how a site's own attribute names map onto the record.

Example:

    store = "/var/lib/aitrail"

    [mapping]
    # audit column = attribute keys tried before the built-in ones
    request_model = ["acme.llm.model"]
    policy_verdict = ["acme.guard.outcome"]

    [features]
    # service.name = the declared AI feature its spans belong to (docs/declarations.md)
    support-agent = "support-agent-suggested-replies"
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .mappings import MAPPABLE
from .redaction.policy import RedactionPolicy
from .retention.policy import RetentionPolicy


def default_store() -> Path:
    """$AITRAIL_STORE, else $XDG_DATA_HOME/aitrail, else ~/.local/share/aitrail."""
    env = os.environ.get("AITRAIL_STORE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "aitrail"


def default_config_path() -> Path | None:
    env = os.environ.get("AITRAIL_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    p = Path(base) / "aitrail" / "aitrail.toml"
    return p if p.exists() else None


@dataclass
class Config:
    store: Path | None = None
    mapping: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None
    doc: dict = field(default_factory=dict)  # the whole file, for other sections ([auth])
    redaction: RedactionPolicy | None = None  # [redaction]; None: the defaults
    retention: RetentionPolicy | None = None  # [retention]; None: keep everything
    features: dict[str, str] = field(default_factory=dict)  # [features]: service -> feature


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        doc = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    mapping: dict[str, list[str]] = {}
    for col, keys in (doc.get("mapping") or {}).items():
        if col not in MAPPABLE:
            raise ConfigError(
                f"{path}: [mapping] {col!r} is not a mappable audit column; "
                f"choose one of: {', '.join(sorted(MAPPABLE))}")
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"{path}: [mapping] {col} must be a string or a list of strings")
        mapping[col] = keys
    features = doc.get("features") or {}
    if not isinstance(features, dict) or not all(
            isinstance(v, str) and v for v in features.values()):
        raise ConfigError(f"{path}: [features] maps a service name to a feature name: "
                          'support-agent = "support-agent-suggested-replies"')
    store = doc.get("store")
    return Config(store=Path(store) if store else None, mapping=mapping, path=Path(path),
                  doc=doc, redaction=RedactionPolicy.from_config(doc, str(path)),
                  retention=RetentionPolicy.from_config(doc, str(path)),
                  features=dict(features))


_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_tenant(tenant: str) -> str:
    """Tenants become directory names: refuse anything that could escape or confuse a path."""
    if not _TENANT_RE.match(tenant):
        raise ValueError(
            f"invalid tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return tenant
