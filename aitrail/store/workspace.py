"""Investigation state kept beside the record: incident pins and notes, and the read audit.

Both live in `<store>/_workspace/` as append-only JSON Lines, never under `spans/` or
`logs/`, so they do not touch the record or its manifest. Every append is one `write` of a
whole line under an exclusive `flock`, then `fsync`: two responders' apps (or processes)
appending at once never interleave, and an acknowledged pin, note or access entry survives
a crash. A line torn by a crash mid-write is skipped on read and the next append starts on
a fresh line.

Once `attach_views(store)` has run on a `Store`, both are DuckDB views: `access_log`
(columns as in `ACCESS_COLUMNS`) and `incident_log` (one row per pin, unpin or note).
"""

from __future__ import annotations

import fcntl
import getpass
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from .errors import BadInput
from .fsutil import fsync_dir
from .query import Result, Store

WORKSPACE_DIR = "_workspace"
INCIDENTS_FILE = "incidents.jsonl"
ACCESS_FILE = "access_log.jsonl"
ACCESS_COLUMNS = ("time", "user", "action", "target", "trace_id", "span_id", "change_id",
                  "detail")
# What a read-audit entry can say was done.
ACCESS_ACTIONS = ("open_ai_call", "open_replay", "export", "open_trace")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def current_user() -> str:
    """Who is acting, for logs: the login name, else the uid."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER (containers)
        return f"uid:{os.getuid()}"


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line durably; safe against concurrent appenders on one machine."""
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    if created:
        fsync_dir(path.parent.parent)
    line = orjson.dumps(record) + b"\n"
    new_file = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a torn last line from a crash: keep ours whole
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # also releases the lock
    if new_file:
        fsync_dir(path.parent)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every whole, parseable record of a JSONL file, in file order."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # torn by a crash mid-append
        if isinstance(rec, dict):
            out.append(rec)
    return out


@dataclass
class Incident:
    name: str
    pins: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    updated: str = ""


class Workspace:
    """Incidents (pins and notes) and the access log of one store directory."""

    def __init__(self, root: str | Path, user: str | None = None) -> None:
        self.root = Path(root)
        self.dir = self.root / WORKSPACE_DIR
        self.user = user or current_user()

    # -- incidents ---------------------------------------------------------------------------

    @staticmethod
    def _check_name(name: str) -> str:
        name = " ".join(str(name).split())
        if not name or len(name) > 200:
            raise BadInput("an incident needs a name of 1 to 200 characters")
        return name

    def pin(self, incident: str, trace_id: str, span_id: str | None = None,
            label: str = "") -> None:
        append_line(self.dir / INCIDENTS_FILE, {
            "time": _now(), "user": self.user, "op": "pin",
            "incident": self._check_name(incident), "trace_id": trace_id,
            "span_id": span_id, "label": label})

    def unpin(self, incident: str, trace_id: str, span_id: str | None = None) -> None:
        append_line(self.dir / INCIDENTS_FILE, {
            "time": _now(), "user": self.user, "op": "unpin",
            "incident": self._check_name(incident), "trace_id": trace_id,
            "span_id": span_id})

    def note(self, incident: str, text: str, trace_id: str | None = None,
             span_id: str | None = None) -> None:
        if not text.strip():
            raise BadInput("a note needs some text")
        append_line(self.dir / INCIDENTS_FILE, {
            "time": _now(), "user": self.user, "op": "note",
            "incident": self._check_name(incident), "text": text, "trace_id": trace_id,
            "span_id": span_id})

    def incidents(self) -> list[Incident]:
        """Every incident, most recently touched first, as the log of operations adds up."""
        found: dict[str, Incident] = {}
        for rec in read_lines(self.dir / INCIDENTS_FILE):
            name = rec.get("incident")
            if not isinstance(name, str):
                continue
            inc = found.setdefault(name, Incident(name))
            inc.updated = str(rec.get("time") or inc.updated)
            key = (rec.get("trace_id"), rec.get("span_id"))
            if rec.get("op") == "pin":
                if all((p["trace_id"], p["span_id"]) != key for p in inc.pins):
                    inc.pins.append(rec)
            elif rec.get("op") == "unpin":
                inc.pins = [p for p in inc.pins if (p["trace_id"], p["span_id"]) != key]
            elif rec.get("op") == "note":
                inc.notes.append(rec)
        return sorted(found.values(), key=lambda i: i.updated, reverse=True)

    def incident(self, name: str) -> Incident:
        for inc in self.incidents():
            if inc.name == name:
                return inc
        return Incident(name)

    # -- read audit --------------------------------------------------------------------------

    def log_access(self, action: str, target: str, trace_id: str | None = None,
                   span_id: str | None = None, change_id: str | None = None,
                   detail: str = "") -> None:
        if action not in ACCESS_ACTIONS:
            raise BadInput(f"unknown access action {action!r}")
        append_line(self.dir / ACCESS_FILE, {
            "time": _now(), "user": self.user, "action": action, "target": target,
            "trace_id": trace_id, "span_id": span_id, "change_id": change_id,
            "detail": detail})

    def access_log(self, limit: int = 1000) -> Result:
        """The newest `limit` entries, newest first."""
        recs = read_lines(self.dir / ACCESS_FILE)
        rows = [{c: r.get(c) for c in ACCESS_COLUMNS} for r in reversed(recs)]
        return Result(list(ACCESS_COLUMNS), rows[:limit], truncated=len(rows) > limit)


_ACCESS_VIEW_TYPES = {"time": "TIMESTAMPTZ", "user": "VARCHAR", "action": "VARCHAR",
                      "target": "VARCHAR", "trace_id": "VARCHAR", "span_id": "VARCHAR",
                      "change_id": "VARCHAR", "detail": "VARCHAR"}
_INCIDENT_VIEW_TYPES = {"time": "TIMESTAMPTZ", "user": "VARCHAR", "op": "VARCHAR",
                        "incident": "VARCHAR", "trace_id": "VARCHAR", "span_id": "VARCHAR",
                        "label": "VARCHAR", "text": "VARCHAR"}


def _jsonl_view(store: Store, view: str, path: Path, types: dict[str, str]) -> None:
    if path.exists() and path.stat().st_size:
        literal = str(path).replace("'", "''")
        cols = ", ".join(f"'{c}': '{t}'" for c, t in types.items())
        source = (f"read_json('{literal}', format = 'newline_delimited', "
                  f"ignore_errors = true, columns = {{{cols}}})")
        store.con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT "
                          f"{', '.join(types)} FROM {source}")
    else:
        cols = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in types.items())
        store.con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT {cols} WHERE false")


def attach_views(store: Store) -> None:
    """(Re)create the views `access_log` and `incident_log` over `<store>/_workspace/`.

    Called again after an append so a file created since the store was opened shows up;
    without a file its view exists and is empty, so queries against it never fail.
    `incident_log` is the operations as written (pin, unpin, note), oldest first.
    """
    _jsonl_view(store, "access_log", store.root / WORKSPACE_DIR / ACCESS_FILE,
                _ACCESS_VIEW_TYPES)
    _jsonl_view(store, "incident_log", store.root / WORKSPACE_DIR / INCIDENTS_FILE,
                _INCIDENT_VIEW_TYPES)
