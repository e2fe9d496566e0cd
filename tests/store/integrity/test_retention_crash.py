"""A retention run killed with SIGKILL at drawn points (right after a tombstone is fsync'd,
halfway through deleting a file and what derives from it, right after a deletion): `verify`
never reports a problem, and the next run finishes the job so the store verifies with no
note left, every retired file counted and the held file still there."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from aitrail.store.integrity.verify import verify_store
from aitrail.store.retention.apply import apply_retention
from aitrail.store.retention.policy import RetentionPolicy

from .conftest import LATER, build, copy_store

NOW = LATER + timedelta(days=30)
CHILD = """
import os, signal, sys
from datetime import datetime
from pathlib import Path
from aitrail.store.integrity import log as log_mod
from aitrail.store.retention import apply as apply_mod
from aitrail.store.retention.policy import RetentionPolicy

root, point, n, now = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
seen = {"retire": 0, "remove": 0}
append, remove = log_mod.LeafLog.append, apply_mod._remove

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def patched_append(self, fields):
    entry = append(self, fields)
    if fields.get("kind") == "retire":
        seen["retire"] += 1
        if point == "after_tombstone" and seen["retire"] == n:
            die()
    return entry

def patched_remove(root_, path):
    seen["remove"] += 1
    if point == "mid_remove" and seen["remove"] == n:
        path.unlink()  # the file is gone, its sidecar and directories not yet
        die()
    remove(root_, path)
    if point == "after_remove" and seen["remove"] == n:
        die()

log_mod.LeafLog.append = patched_append
apply_mod._remove = patched_remove
apply_mod.apply_retention(root, RetentionPolicy(days=7), now=datetime.fromisoformat(now))
print("finished")
"""


@pytest.fixture(scope="module")
def crash_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("crash") / "s", flushes=4, traces=3, hours=3, seed=11)


@pytest.mark.parametrize("trial", range(8))
def test_a_killed_retention_run_loses_nothing_and_is_finished_by_the_next(crash_base, tmp_path,
                                                                         trial):
    rng = random.Random(trial)
    root = copy_store(crash_base, tmp_path / "s")
    files = sorted(root.glob("spans/*/*/*/*.parquet"))
    point = ("after_tombstone", "mid_remove", "after_remove")[trial % 3]
    n = rng.randint(1, len(files))
    child = subprocess.run([sys.executable, "-c", CHILD, str(root), point, str(n),
                            NOW.isoformat()], capture_output=True, text=True, timeout=120,
                           check=False)
    assert child.returncode == -9, child.stderr  # killed where drawn, not finished
    report = verify_store(root)
    assert report.ok, [f.to_dict() for f in report.problems]
    assert {f.cls for f in report.notes} <= {"retirement_interrupted"}
    assert len(report.notes) == (1 if point == "after_tombstone" else 0)

    again = apply_retention(root, RetentionPolicy(days=7), now=NOW)
    assert again.completed == len(report.notes)
    assert not list(root.glob("spans/*/*/*/*.parquet"))
    assert not list(root.glob("spans/*/*/*/_*.tids"))
    final = verify_store(root)
    assert final.ok and not final.findings, [f.to_dict() for f in final.findings]
    assert final.retired == len(files)
