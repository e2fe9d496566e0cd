"""A bundle carries the retention policy in force and the legal holds over its traces, as
retention log entries proven against its checkpoint (docs/retention.md, docs/bundles.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from aitrail.store.bundle.archive import read_bundle
from aitrail.store.bundle.export import Selection
from aitrail.store.bundle.layout import MANIFEST, TIMELINE
from aitrail.store.bundle.verify import verify_files
from aitrail.store.integrity import keys
from aitrail.store.query import Store
from aitrail.store.retention.apply import apply_retention
from aitrail.store.retention.holds import add_hold, remove_hold
from aitrail.store.retention.policy import RetentionPolicy

from .conftest import CHANGE, make_bundle
from .test_verify import resign


def test_holds_and_policy_travel_with_the_bundle_and_are_proven(sample_store: Path,
                                                               tmp_path: Path):
    store = tmp_path / "store"
    shutil.copytree(sample_store, store)
    with Store(store) as st:
        other = next(t for t in (r["trace_id"] for r in st.search(limit=50).rows)
                     if t not in st.change_trace_ids(CHANGE))
    add_hold(store, change=CHANGE, hold_id="inc-4821", reason="postmortem", user="ana")
    add_hold(store, traces=[other], hold_id="unrelated", user="ana")
    add_hold(store, service="deployer", hold_id="deploys", user="bo")
    remove_hold(store, "deploys", reason="matter closed", user="bo")
    apply_retention(store, RetentionPolicy(mode="compliance", days=3650))  # recorded only

    bundle = make_bundle(store, tmp_path / "b", Selection("change", [CHANGE]))
    files = read_bundle(bundle)
    report = verify_files(files)
    assert report.ok, [p.to_dict() for p in report.problems]
    assert [h["id"] for h in report.holds] == ["inc-4821", "deploys"]
    assert report.holds[0]["reason"] == "postmortem" and report.holds[0]["released"] is None
    assert report.holds[1]["released"]["reason"] == "matter closed"
    assert report.policy == {"mode": "compliance", "retention_days": 3650, "tenants": {}}
    timeline = files[TIMELINE].decode()
    assert "## Legal holds" in timeline
    assert "`inc-4821` placed" in timeline and "by ana: postmortem (in force" in timeline
    assert "`deploys`" in timeline and "removed" in timeline and "unrelated" not in timeline

    # A key holder who edits a hold (here: its reason) and re-signs is still caught: the
    # entry is no longer the leaf the checkpoint signed.
    manifest = orjson.loads(files[MANIFEST])
    hold = next(e for e in manifest["retention"] if '"inc-4821"' in e["entry"])
    entry = orjson.loads(hold["entry"])
    entry["reason"] = "routine"
    hold["entry"] = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS).decode()
    report = verify_files(resign(files, keys.Signer(store), manifest))
    assert report.classes() == {"retention_invalid"}
