"""The one object screens use to reach the store, from worker threads.

DuckDB's connection is not safe for concurrent use from several threads, and screens query
from workers so the UI keeps painting: every call takes one lock.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..store import findings, pivots, replay, workspace
from ..store.query import Result, Store
from ..store.retention import holds

# Findings kept for the findings screen and the span markers (newest first).
FINDINGS_LIMIT = 5000


class StoreClient:
    def __init__(self, root: str | Path, user: str | None = None,
                 features: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.workspace = workspace.Workspace(self.root, user)
        self.features = dict(features or {})
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._findings: Result | None = None
        self._marks: dict[str, list[str]] | None = None

    @property
    def store(self) -> Store:
        """Opened on first use, which is in a worker: opening builds views over every file
        (1.4 s measured on a 1M-span store of ~500 files) and must not delay the first
        frame. Callers hold the lock."""
        if self._store is None:
            self._store = Store(self.root)
            workspace.attach_views(self._store)
            findings.attach_findings(self._store, self.features)
        return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()

    # -- legal holds (the integrity log, not DuckDB: no lock) ----------------------------------

    def holds(self) -> list[holds.Hold]:
        return holds.active_holds(self.root)

    def hold_incident(self, name: str, reason: str) -> holds.Hold:
        """Preserve an incident's traces from retention (and the traces pinned later)."""
        return holds.add_hold(self.root, incident=name, reason=reason,
                              user=self.workspace.user)

    # -- reads -------------------------------------------------------------------------------

    def has_data(self) -> bool:
        with self._lock:
            return self.store.has_data()

    def search(self, limit: int, **filters: Any) -> Result:
        with self._lock:
            return self.store.search(limit=limit, **filters)

    def facets(self, top: int = 8, **filters: Any) -> dict[str, list[tuple[Any, int]]]:
        with self._lock:
            return self.store.facets(top, **filters)

    def trace(self, trace_id: str, tenant: str | None = None) -> Result:
        with self._lock:
            return self.store.trace(trace_id, tenant)

    def change_spans(self, change_id: str, tenant: str | None = None) -> Result:
        with self._lock:
            return self.store.change_spans(change_id, tenant)

    def changes(self, limit: int = 200) -> Result:
        with self._lock:
            return self.store.changes(limit)

    def sql(self, query: str, limit: int = 500) -> Result:
        with self._lock:
            # another responder (or this one) may have started the workspace files since
            workspace.attach_views(self.store)
            return self.store.sql(query, limit=limit)

    def replay_steps(self, change_id: str | None = None, trace_id: str | None = None,
                     ) -> tuple[list[replay.Step], list[dict[str, Any]]]:
        rows = (self.change_spans(change_id).rows if change_id
                else self.trace(str(trace_id)).rows)
        return replay.build_steps(rows), rows

    def findings(self, refresh: bool = False) -> Result:
        """Every finding (at most FINDINGS_LIMIT, newest first), evaluated once: over 1M
        spans that takes seconds, so screens share one evaluation until a refresh."""
        with self._lock:
            if self._findings is None or refresh:
                findings.attach_findings(self.store, self.features)  # new declarations
                self._findings = findings.findings(self.store, limit=FINDINGS_LIMIT)
                marks: dict[str, list[str]] = {}
                for f in self._findings.rows:
                    for e in f["evidence"]:
                        rules = marks.setdefault(e["span_id"], [])
                        if f["rule"] not in rules:
                            rules.append(f["rule"])
                self._marks = marks
            return self._findings

    def finding_marks(self) -> dict[str, list[str]]:
        """span id -> the rules it is evidence for."""
        self.findings()
        return self._marks or {}

    def spans_sharing(self, pivot: pivots.Pivot) -> Result:
        with self._lock:
            return pivots.spans_sharing(self.store, pivot)

    def export_trace(self, trace_id: str, path: str | Path,
                     tenant: str | None = None) -> int:
        """Write one trace as OTLP/JSON (what `aitrail show --format otlp-json` prints and
        `aitrail ingest` reads back), then record the export in the access log."""
        from ..store.otlp_decode import request_to_json
        from ..store.otlp_encode import rows_to_request

        with self._lock:
            rows = self.store.raw_trace(trace_id, tenant)
        target = Path(path).expanduser()
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(request_to_json(rows_to_request(rows)) + b"\n")
        tmp.replace(target)
        self.log_access("export", f"trace {trace_id} -> {target}", trace_id=trace_id,
                        detail=f"{len(rows)} spans, OTLP/JSON")
        return len(rows)

    def export_bundle(self, kind: str, value: str, path: str | Path,
                      tenant: str | None = None, progress: Any = None) -> Any:
        """A verifiable bundle (docs/bundles.md) of a trace, a change or an incident's pinned
        traces, written to `path` (.tar.gz); the export is recorded in the access log.
        `progress(stage, done, total)` is called from this (worker) thread."""
        from ..store.bundle.export import Selection, export

        with self._lock:
            report = export(self.store, self.workspace, Selection(kind, [value], tenant),
                            Path(path).expanduser(), progress=progress)
            workspace.attach_views(self.store)  # the access log may be new: refresh the view
        return report

    # -- the workspace (pins, notes, read audit) --------------------------------------------

    def log_access(self, action: str, target: str, **ids: Any) -> None:
        self.workspace.log_access(action, target, **ids)
        with self._lock:
            workspace.attach_views(self.store)  # the file may be new: refresh the view

    def access_log(self, limit: int = 1000) -> Result:
        return self.workspace.access_log(limit)
