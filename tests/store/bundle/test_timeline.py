"""timeline.md: the migration incident's, checked in as a golden file (regenerate with
AITRAIL_UPDATE_GOLDEN=1 and read the diff), stable across exports, and naming redactions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson

from aitrail.store.bundle.export import Selection
from aitrail.store.workspace import INCIDENTS_FILE, WORKSPACE_DIR, append_line

from .conftest import make_bundle

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "timeline-02-migration.md"
INCIDENT = "INC-311 invoices writes blocked"
NOTES = [  # as the TUI writes them (Workspace.pin / note), with fixed times
    {"time": "2026-11-10T10:05:12.000000+00:00", "user": "ana", "op": "pin",
     "incident": INCIDENT, "trace_id": "14e97493a3ab0e550921fa978579dda4",
     "span_id": "b50a16f28f5f46a4", "label": "ALTER TABLE invoices"},
    {"time": "2026-11-10T10:06:40.000000+00:00", "user": "ana", "op": "pin",
     "incident": INCIDENT, "trace_id": "9fdcbd1e1b8de4148708ee9a67882717", "span_id": None,
     "label": "coding-agent run"},
    {"time": "2026-11-10T10:07:02.000000+00:00", "user": "ana", "op": "pin",
     "incident": INCIDENT, "trace_id": "363001aa23611b1a1c1966bbca235453", "span_id": None,
     "label": "review and merge"},
    {"time": "2026-11-10T10:09:30.000000+00:00", "user": "ana", "op": "note",
     "incident": INCIDENT, "text": "The runbook the agent retrieved says CREATE INDEX "
     "CONCURRENTLY and lock_timeout 3s; the migration did neither.",
     "trace_id": "9fdcbd1e1b8de4148708ee9a67882717", "span_id": "a137e423fad1af63"},
    {"time": "2026-11-10T10:12:05.000000+00:00", "user": "ben", "op": "note",
     "incident": INCIDENT, "text": "Approved 40 s after the PR opened, 1 of 2 files viewed.",
     "trace_id": "363001aa23611b1a1c1966bbca235453", "span_id": "ca94c35a68be092b"},
]


def incident_timeline(store: Path, dest: Path, user: str) -> str:
    for rec in NOTES:
        append_line(store / WORKSPACE_DIR / INCIDENTS_FILE, rec)
    bundle = make_bundle(store, dest, Selection("incident", [INCIDENT]), user=user)
    return (bundle / "timeline.md").read_text()


def test_migration_incident_timeline_matches_the_golden_file(migration_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(migration_store, store)
    text = incident_timeline(store, tmp_path / "b", "ana")
    if os.environ.get("AITRAIL_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    # What a postmortem needs, in words.
    for words in ("returned **review**, enforced **escalate**",
                  "Reviewed by **dana@acme.example**: **approved**",
                  "docs/runbooks/migrations.md#large-tables", "Prompt (user)",
                  "**Failed:** canceling statement due to lock timeout",
                  "Change: migration apply on `prod-eu/billing-db`",
                  "ben in “INC-311 invoices writes blocked”"):
        assert words in text, words


def test_timeline_is_the_same_whoever_exports_it_and_when(migration_store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(migration_store, a)
    shutil.copytree(migration_store, b)
    first = incident_timeline(a, tmp_path / "ba", "ana")
    second = incident_timeline(b, tmp_path / "bb", "zoe")
    assert first == second
    exported_at = orjson.loads((tmp_path / "ba" / "manifest.json").read_bytes())["exported_at"]
    assert exported_at[:16] not in first and "zoe" not in second


def test_timeline_names_each_redaction_without_the_secret(all_bundle):
    text = (all_bundle / "timeline.md").read_text()
    section = text.split("### Redactions")
    listed = [line for part in section[1:] for line in part.splitlines()
              if line.startswith("- `")]
    assert listed and all("fingerprint `" in line for line in listed)
