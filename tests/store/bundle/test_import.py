"""Export -> import into an empty store: the same stored rows (redactions included), the
same replay, a store that still verifies clean, provenance kept, and nothing added twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from aitrail.cli import main
from aitrail.store.bundle.import_ import BundleRejected, import_bundle
from aitrail.store.integrity.verify import verify_store
from aitrail.store.query import Store
from aitrail.store.replay import build_steps


def replays(root: Path) -> dict[str, list[dict]]:
    with Store(root) as st:
        return {c["change_id"]: [s.as_dict() for s in build_steps(
            st.change_spans(c["change_id"]).rows)] for c in st.changes(limit=1000).rows}


def test_round_trip_keeps_rows_redactions_and_replay(samples_copy, all_bundle, tmp_path):
    target = tmp_path / "other"
    report = import_bundle(target, all_bundle, user="importer")
    with Store(samples_copy) as a, Store(target) as b:
        before, after = a.raw_rows(), b.raw_rows()
    assert report.spans == len(before) == len(after) and report.skipped == 0
    assert after == before
    assert any(r["redactions"] for r in after)
    assert replays(target) == replays(samples_copy) != {}
    check = verify_store(target)
    assert check.ok, check.problems
    assert check.rows == len(before)


def test_importing_twice_adds_nothing(all_bundle, change_bundle, tmp_path):
    target = tmp_path / "other"
    first = import_bundle(target, all_bundle)
    files = sorted(target.rglob("*.parquet"))
    again = import_bundle(target, all_bundle)
    overlap = import_bundle(target, change_bundle)  # its traces are in the first bundle
    assert first.spans > 0
    assert (again.spans, again.skipped) == (0, first.spans)
    assert (overlap.spans, overlap.skipped) == (0, 23)
    assert sorted(target.rglob("*.parquet")) == files
    assert verify_store(target).ok


def test_imported_files_and_the_workspace_name_the_bundle(change_bundle, tmp_path, capsys):
    target = tmp_path / "other"
    assert main(["--store", str(target), "import", str(change_bundle), "--format",
                 "json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["spans"] == 23 and len(out["files"]) == 1
    meta = pq.read_metadata(target / out["files"][0]).metadata
    assert meta[b"aitrail.import.bundle_sha256"].decode() == out["bundle_sha256"]
    assert meta[b"aitrail.import.origin"].decode() == out["origin"]
    assert meta[b"aitrail.import.checkpoint_sha256"].decode() == out["checkpoint_sha256"]
    lines = (target / "_workspace" / "imports.jsonl").read_bytes().splitlines()
    rec = orjson.loads(lines[-1])
    assert rec["bundle"] == str(change_bundle.resolve())
    assert rec["selection"]["kind"] == "change" and rec["spans"] == 23
    # The provenance is in the file's bytes, which the integrity log hashes: editing it is
    # tampering `verify` reports.
    log = (target / "_integrity" / "import" / "log").read_bytes()
    assert out["files"][0].encode() in log


def test_a_tampered_bundle_is_refused_and_nothing_is_written(all_bundle, tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(all_bundle, bundle)
    data = bytearray((bundle / "spans.parquet").read_bytes())
    data[len(data) // 2] ^= 0x20
    (bundle / "spans.parquet").write_bytes(bytes(data))
    target = tmp_path / "other"
    with pytest.raises(BundleRejected) as e:
        import_bundle(target, bundle)
    assert "file_modified" in e.value.report.classes()
    assert not (target / "spans").exists()
    assert main(["--store", str(target), "import", str(bundle)]) == 1
    assert "nothing imported" in capsys.readouterr().err
