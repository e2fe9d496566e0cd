"""Legal holds: data that retention must keep, whatever its age, until the hold is removed.

A hold selects rows by trace ids, a change id, an incident of the workspace (its pinned
traces) or a service and a time range, optionally within one tenant. Placing and removing a
hold are entries of the store's `retention` integrity log, appended (and fsync'd) before
they take effect: the log is the only place holds live, so they are as tamper-evident as
the data they protect, and their history (who, when, why) is never lost.

A change or incident hold records the trace ids it resolved to when placed, and is resolved
again each time retention runs, so spans of the change that arrive later, or traces pinned
to the incident later, are held too. Held data stays where it was: searchable as before.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import BadInput, NotFound
from ..integrity.log import INTEGRITY_DIR, leaf_log

RETENTION_LOG = "retention"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _ns(t: datetime | int | None) -> int | None:
    if t is None or isinstance(t, int):
        return t
    return int(t.timestamp() * 1_000_000) * 1000


@dataclass
class Hold:
    id: str
    select: dict[str, Any]  # traces | change | incident | service (+ since, until), tenant
    trace_ids: list[str]  # hex; resolved when placed
    reason: str
    user: str
    time: int  # ns, when placed
    seq: int  # its entry in the retention log
    released: dict[str, Any] | None = None  # {user, reason, time, seq}

    @property
    def active(self) -> bool:
        return self.released is None

    def describe(self) -> str:
        s = self.select
        if s.get("traces"):
            what = f"{len(s['traces'])} trace(s)"
        elif s.get("change"):
            what = f"change {s['change']}"
        elif s.get("incident"):
            what = f"incident {s['incident']!r}"
        else:
            what = f"service {s['service']}"
            if s.get("since") or s.get("until"):
                what += f" from {_iso(s.get('since'))} to {_iso(s.get('until'))}"
        return what + (f" (tenant {s['tenant']})" if s.get("tenant") else "")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "active": self.active, "selects": self.describe(),
                "select": self.select, "trace_ids": self.trace_ids, "reason": self.reason,
                "user": self.user, "placed": _iso(self.time), "released": self.released}


def _iso(ns: int | None) -> str:
    if ns is None:
        return "open"
    return datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def read_holds(root: Path) -> list[Hold]:
    """Every hold ever placed, oldest first, with its release if it was removed."""
    holds: dict[str, Hold] = {}
    for e in reversed(list(leaf_log(root, RETENTION_LOG).entries_from_end())):
        if e.get("kind") == "hold":
            holds[e["hold"]] = Hold(e["hold"], e.get("select") or {}, e.get("trace_ids") or [],
                                    e.get("reason", ""), e.get("user", ""), e["time"],
                                    e["seq"])
        elif e.get("kind") == "release" and e.get("hold") in holds:
            holds[e["hold"]].released = {"user": e.get("user", ""),
                                         "reason": e.get("reason", ""),
                                         "time": _iso(e["time"]), "seq": e["seq"]}
    return list(holds.values())


def active_holds(root: Path) -> list[Hold]:
    return [h for h in read_holds(root) if h.active]


def _change_traces(root: Path, change_id: str, tenant: str | None) -> list[str]:
    from ..query import Store

    with Store(root) as st:
        return st.change_trace_ids(change_id, tenant)


def _incident_traces(root: Path, incident: str) -> list[str]:
    from ..workspace import Workspace

    return sorted({p["trace_id"] for p in Workspace(root).incident(incident).pins
                   if p.get("trace_id")})


def resolve(root: Path, hold: Hold) -> set[str]:
    """The trace ids a hold covers now (what it recorded, and what its change or incident
    selects today)."""
    ids = set(hold.trace_ids)
    s = hold.select
    if s.get("change"):
        ids.update(_change_traces(root, s["change"], s.get("tenant")))
    elif s.get("incident"):
        # The incident's pins may be gone: what was recorded stays held.
        with contextlib.suppress(NotFound, BadInput):
            ids.update(_incident_traces(root, s["incident"]))
    return ids


def add_hold(root: Path, *, traces: list[str] | None = None, change: str | None = None,
             incident: str | None = None, service: str | None = None,
             since: datetime | int | None = None, until: datetime | int | None = None,
             tenant: str | None = None, reason: str = "", hold_id: str | None = None,
             user: str = "") -> Hold:
    """Place a hold (logged before it takes effect: the log is where holds live)."""
    from .apply import retention_lock

    chosen = [k for k, v in (("--trace", traces), ("--change", change),
                             ("--incident", incident), ("--service", service)) if v]
    if len(chosen) != 1:
        raise BadInput("a hold selects by exactly one of --trace, --change, --incident or "
                       f"--service (got {', '.join(chosen) or 'none'})")
    if (since or until) and not service:
        raise BadInput("--since and --until go with --service")
    select: dict[str, Any] = {}
    if tenant:
        select["tenant"] = tenant
    root = Path(root)
    if not root.is_dir():
        raise NotFound(f"no store at {root}")
    if traces:
        ids = sorted({t.strip().lower() for t in traces})
        bad = [t for t in ids if not _HEX32.match(t)]
        if bad:
            raise BadInput(f"trace id {bad[0]!r} must be 32 hexadecimal characters")
        select["traces"] = ids
    elif change:
        ids = _change_traces(root, change, tenant)
        if not ids:
            raise NotFound(f"no spans with change id {change!r} in {root}; `aitrail changes` "
                           "lists the known ones (or hold its traces with --trace)")
        select["change"] = change
    elif incident:
        ids = _incident_traces(root, incident)
        if not ids:
            raise NotFound(f"incident {incident!r} has no pinned traces to hold; pin them "
                           "in the TUI first (or hold traces with --trace)")
        select["incident"] = incident
    else:
        ids = []
        select["service"] = service
        s, u = _ns(since), _ns(until)
        if s is not None and u is not None and s >= u:
            raise BadInput("--since must be before --until")
        select["since"], select["until"] = s, u
    with retention_lock(root):
        existing = read_holds(root)
        if hold_id is None:
            hold_id = f"hold-{len(existing) + 1}"
        if not _ID.match(hold_id):
            raise BadInput(f"hold id {hold_id!r}: use up to 80 letters, digits, '.', '_', ':' "
                           "or '-'")
        if any(h.id == hold_id for h in existing):
            raise BadInput(f"a hold named {hold_id!r} exists already (`aitrail hold list "
                           "--all`); choose another --id")
        log = leaf_log(root, RETENTION_LOG)
        e = log.append({"kind": "hold", "hold": hold_id, "select": select, "trace_ids": ids,
                        "reason": reason, "user": user})
        log.checkpoint()
    return Hold(hold_id, select, ids, reason, user, e["time"], e["seq"])


def remove_hold(root: Path, hold_id: str, reason: str = "", user: str = "") -> Hold:
    """Release a hold (logged; its data is then subject to retention again)."""
    from .apply import retention_lock

    root = Path(root)
    with retention_lock(root):
        hold = next((h for h in read_holds(root) if h.id == hold_id), None)
        if hold is None:
            raise NotFound(f"no hold {hold_id!r}; `aitrail hold list` shows the active ones")
        if not hold.active:
            raise BadInput(f"hold {hold_id!r} was already removed "
                           f"({hold.released['time']} by {hold.released['user']})")
        log = leaf_log(root, RETENTION_LOG)
        e = log.append({"kind": "release", "hold": hold_id, "reason": reason, "user": user})
        log.checkpoint()
    hold.released = {"user": user, "reason": reason, "time": _iso(e["time"]), "seq": e["seq"]}
    return hold


@dataclass
class HoldMatcher:
    """Which active holds cover any row of a table (trace_id, service_name, time column)."""

    traces: dict[str, tuple[str | None, set[bytes]]] = field(default_factory=dict)
    services: list[tuple[str, str | None, str, int | None, int | None]] = \
        field(default_factory=list)  # (hold, tenant, service, since, until)

    @classmethod
    def of(cls, root: Path, holds: list[Hold]) -> HoldMatcher:
        m = cls()
        for h in holds:
            tenant = h.select.get("tenant")
            if h.select.get("service"):
                m.services.append((h.id, tenant, h.select["service"], h.select.get("since"),
                                   h.select.get("until")))
            else:
                m.traces[h.id] = (tenant, {bytes.fromhex(t) for t in resolve(root, h)})
        return m

    def covering(self, tenant: str, table: pa.Table, time_col: str) -> list[str]:
        out = []
        for hid, (t, ids) in self.traces.items():
            if ids and t in (None, tenant) and pc.any(pc.is_in(
                    table.column("trace_id"), pa.array(list(ids), pa.binary(16)))).as_py():
                out.append(hid)
        for hid, t, service, since, until in self.services:
            if t not in (None, tenant):
                continue
            mask = pc.equal(table.column("service_name"), service)
            if since is not None:
                mask = pc.and_(mask, pc.greater_equal(table.column(time_col), since))
            if until is not None:
                mask = pc.and_(mask, pc.less(table.column(time_col), until))
            if pc.any(mask).as_py():
                out.append(hid)
        return out


def retention_events(root: Path, trace_ids: set[str], services: dict[str, tuple[int, int]]
                     ) -> list[tuple[int, bytes]]:
    """(leaf index, exact line) of the retention log entries a bundle of these traces should
    carry: the policy last recorded, and every hold (with its release) that covers one of
    the traces or, for a service hold, one of `services` (service -> (first, last) ns)
    over its time range."""
    path = Path(root) / INTEGRITY_DIR / RETENTION_LOG / "log"
    try:
        lines = path.read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        return []
    entries = []
    for i, line in enumerate(lines):
        with contextlib.suppress(ValueError):
            entries.append((i, line, orjson.loads(line)))
    policy = [(i, line) for i, line, e in entries if e.get("kind") == "policy"][-1:]
    held: set[str] = set()
    for h in read_holds(root):
        s = h.select
        if s.get("service"):
            span = services.get(s["service"])
            covers = span is not None and (s.get("since") is None or span[1] >= s["since"]) \
                and (s.get("until") is None or span[0] < s["until"])
        else:
            covers = bool(resolve(root, h) & trace_ids)
        if covers:
            held.add(h.id)
    events = [(i, line) for i, line, e in entries
              if e.get("kind") in ("hold", "release") and e.get("hold") in held]
    return sorted(policy + events)
