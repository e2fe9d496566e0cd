"""The `[retention]` section of aitrail.toml: how long each tenant's data is kept.

    [retention]
    retention_days = 365        # every tenant without its own; omit to keep data forever
    mode = "governance"         # or "compliance": retention can be extended, never shortened
    interval = 3600             # seconds between the collector's runs (0: only by hand)

    [retention.tenants.acme]
    retention_days = 30

Parsed strictly, like [redaction]: a misspelt key in a setting that deletes evidence is an
error naming the field, never a silently ignored line.

The policy in force is recorded in the store's `retention` integrity log (apply.py) whenever
it changes, so the evidence says which policy retired each file. Once a recorded policy is in
compliance mode, a new one may only keep data longer: `check_change` refuses the rest. The
config file can be edited by anyone who can write it; the store refuses to act on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, StoreError

MODES = ("governance", "compliance")
DEFAULT_INTERVAL_S = 3600.0
_KEYS = ("retention_days", "mode", "interval", "tenants")
_TENANT_KEYS = ("retention_days",)


class RetentionRefused(StoreError):
    """A policy change that compliance mode forbids."""


def _days(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: retention_days must be a whole number of days >= 1 "
                          f"(got {value!r}); leave it out to keep data forever")
    return value


@dataclass(frozen=True)
class RetentionPolicy:
    mode: str = "governance"
    days: int | None = None  # tenants without their own entry; None: forever
    tenants: dict[str, int | None] = field(default_factory=dict)
    interval_s: float = DEFAULT_INTERVAL_S  # not part of the recorded policy

    def days_for(self, tenant: str) -> int | None:
        return self.tenants.get(tenant, self.days)

    def to_entry(self) -> dict[str, Any]:
        """What the retention log records (the interval is how often, not what)."""
        return {"mode": self.mode, "retention_days": self.days,
                "tenants": dict(sorted(self.tenants.items()))}

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> RetentionPolicy:
        return cls(mode=entry.get("mode", "governance"), days=entry.get("retention_days"),
                   tenants=dict(entry.get("tenants") or {}))

    def describe(self) -> str:
        parts = [f"mode {self.mode}",
                 "default " + (f"{self.days} days" if self.days else "forever")]
        parts += [f"{t} " + (f"{d} days" if d else "forever")
                  for t, d in sorted(self.tenants.items())]
        return ", ".join(parts)

    @classmethod
    def from_config(cls, doc: dict[str, Any], where: str) -> RetentionPolicy | None:
        """The policy of a parsed aitrail.toml; None when it has no [retention]."""
        from ..config import check_tenant  # config imports this module

        section = doc.get("retention")
        if section is None:
            return None
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: [retention] must be a table")
        for key in section:
            if key not in _KEYS:
                raise ConfigError(f"{where}: [retention] has no setting {key!r}; "
                                  f"the settings are: {', '.join(_KEYS)}")
        mode = section.get("mode", "governance")
        if mode not in MODES:
            raise ConfigError(f"{where}: [retention] mode must be one of {', '.join(MODES)} "
                              f"(got {mode!r})")
        interval = section.get("interval", DEFAULT_INTERVAL_S)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval < 0:
            raise ConfigError(f"{where}: [retention] interval must be seconds >= 0 "
                              f"(got {interval!r}); 0 applies retention only by hand")
        tenants: dict[str, int | None] = {}
        table = section.get("tenants") or {}
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [retention.tenants] must be a table of tenants")
        for tenant, conf in table.items():
            here = f"{where}: [retention.tenants.{tenant}]"
            try:
                check_tenant(tenant)
            except ValueError as e:
                raise ConfigError(f"{here}: {e}") from None
            if not isinstance(conf, dict):
                raise ConfigError(f"{here} must be a table, e.g. retention_days = 30")
            for key in conf:
                if key not in _TENANT_KEYS:
                    raise ConfigError(f"{here} has no setting {key!r}; the only one is "
                                      "retention_days")
            tenants[tenant] = _days(conf.get("retention_days"), here)
        return cls(mode=mode, days=_days(section.get("retention_days"), f"{where}: [retention]"),
                   tenants=tenants, interval_s=float(interval))


def _longer_or_equal(new: int | None, old: int | None) -> bool:
    return new is None or (old is not None and new >= old)


def check_change(recorded: RetentionPolicy | None, new: RetentionPolicy) -> None:
    """Refuse what compliance mode forbids: leaving it, or keeping anything for less time."""
    if recorded is None or recorded.mode != "compliance":
        return
    why = []
    if new.mode != "compliance":
        why.append("the mode cannot go back to governance")
    if not _longer_or_equal(new.days, recorded.days):
        why.append(f"the default retention cannot go from {recorded.days or 'forever'} "
                   f"to {new.days} days")
    for tenant in sorted(set(recorded.tenants) | set(new.tenants)):
        old, now = recorded.days_for(tenant), new.days_for(tenant)
        if not _longer_or_equal(now, old):
            why.append(f"tenant {tenant}'s retention cannot go from {old or 'forever'} "
                       f"to {now} days")
    if why:
        raise RetentionRefused(
            "the store's retention policy is in compliance mode, which can only keep data "
            "longer: " + "; ".join(why) + ". Set aitrail.toml's [retention] back to at least "
            f"the recorded policy ({recorded.describe()}).")
