"""`aitrail export`: each way of choosing traces, the access log, the checkpoint it proves
against, and refusing to export from a store that fails its own integrity check."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from aitrail.cli import main
from aitrail.store.bundle.archive import read_bundle
from aitrail.store.bundle.export import Selection
from aitrail.store.bundle.verify import verify_bundle
from aitrail.store.errors import StoreError
from aitrail.store.integrity import keys
from aitrail.store.workspace import Workspace

from .conftest import CHANGE, make_bundle

AGENT_TRACE = "9fdcbd1e1b8de4148708ee9a67882717"


@pytest.fixture
def store(migration_store: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(migration_store, root)
    return root


def export_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--format", "json"]) == 0
    return orjson.loads(capsys.readouterr().out)


def test_each_selection_exports_whole_traces(store, tmp_path, capsys):
    ws = Workspace(store, "ana")
    ws.pin("INC-311", AGENT_TRACE)
    ws.pin("INC-311", "14e97493a3ab0e550921fa978579dda4", "b50a16f28f5f46a4")
    cases = {
        "trace": (["--trace", AGENT_TRACE], 1, 10),
        "change": (["--change", CHANGE], 3, 23),
        "incident": (["--incident", "INC-311"], 2, 18),
        "where": (["--where", "reviewer = 'dana@acme.example'"], 1, 5),
    }
    for kind, (args, traces, spans) in cases.items():
        out = export_json(capsys, "--store", str(store), "export", *args,
                          "-o", str(tmp_path / f"{kind}.tar.gz"))
        assert (out["traces"], out["spans"]) == (traces, spans), kind
        report = verify_bundle(tmp_path / f"{kind}.tar.gz")
        assert report.ok and report.selection["kind"] == kind
        assert report.exported_by


def test_every_export_is_in_the_access_log(store, tmp_path, capsys):
    export_json(capsys, "--store", str(store), "export", "--change", CHANGE, "--dir",
                "-o", str(tmp_path / "b"))
    entry = Workspace(store).access_log().rows[0]
    assert entry["action"] == "export" and entry["change_id"] == CHANGE
    assert str(tmp_path / "b") in entry["target"] and "23 spans" in entry["detail"]


def test_a_fresh_checkpoint_is_signed_only_when_the_last_does_not_cover_the_spans(
        store, tmp_path, capsys):
    first = export_json(capsys, "--store", str(store), "export", "--trace", AGENT_TRACE,
                        "-o", str(tmp_path / "1.tar.gz"))
    second = export_json(capsys, "--store", str(store), "export", "--trace", AGENT_TRACE,
                         "-o", str(tmp_path / "2.tar.gz"))
    assert first["fresh_checkpoint"] and not second["fresh_checkpoint"]
    cp = keys.parse_checkpoint((store / "_integrity" / "checkpoint").read_bytes())
    assert read_bundle(tmp_path / "2.tar.gz")["checkpoint"] == cp.encode()


def test_nothing_matching_is_not_found(store, tmp_path, capsys):
    assert main(["--store", str(store), "export", "--change", "chg-nope", "-o",
                 str(tmp_path / "x.tar.gz")]) == 3
    assert main(["--store", str(store), "export", "--trace", "0" * 32, "-o",
                 str(tmp_path / "x.tar.gz")]) == 3
    assert main(["--store", str(store), "export", "--incident", "none", "-o",
                 str(tmp_path / "x.tar.gz")]) == 3
    assert not (tmp_path / "x.tar.gz").exists()


def test_export_refuses_a_store_whose_file_was_edited(store, tmp_path):
    path = next((store / "spans").rglob("*.parquet"))
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="aitrail verify"):
        make_bundle(store, tmp_path / "b", Selection("change", [CHANGE]))
    assert not (tmp_path / "b").exists()


def test_export_help_teaches_the_layout(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    for word in ("spans.parquet", "traces.otlp.jsonl", "timeline.md", "manifest.json",
                 "--incident", "aitrail verify"):
        assert word in text


def test_spans_stay_provable_after_compaction_merges_their_files(store, tmp_path):
    from datetime import UTC, datetime

    from aitrail.store.bundle.import_ import import_bundle
    from aitrail.store.compact import compact_store

    before = make_bundle(store, tmp_path / "before", Selection("change", [CHANGE]))
    report = compact_store(store, now=datetime(2027, 1, 1, tzinfo=UTC), grace_s=0)
    assert report.partitions >= 1
    after = make_bundle(store, tmp_path / "after", Selection("change", [CHANGE]))
    manifest = orjson.loads((after / "manifest.json").read_bytes())
    assert {s["log"] for s in manifest["sources"]} == {"compact"}
    assert verify_bundle(before).ok and verify_bundle(after).ok
    target = tmp_path / "target"
    assert import_bundle(target, before).spans == 23
    assert import_bundle(target, after).spans == 0  # the same rows: same digests
