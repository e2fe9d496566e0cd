"""Retention and legal hold (docs/retention.md) with an injected clock, over stores written by
the real write path: what is retired, what holds keep, what compliance mode refuses, how a
crash between a tombstone and its unlink is finished, and what `verify` then says."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrail.store.compact import compact_store
from aitrail.store.errors import BadInput, NotFound
from aitrail.store.integrity.verify import verify_store
from aitrail.store.query import Store
from aitrail.store.retention import apply as apply_mod
from aitrail.store.retention.apply import (
    RetentionRunner,
    apply_retention,
    complete_interrupted,
    recorded_policy,
)
from aitrail.store.retention.holds import add_hold, read_holds, remove_hold
from aitrail.store.retention.policy import RetentionPolicy, RetentionRefused
from aitrail.store.workspace import Workspace

from .conftest import LATER, T0, build, copy_store

START = datetime.fromtimestamp(T0 / 1e9, UTC)  # the stores' first hour
WEEK = RetentionPolicy(days=7)


def _files(root: Path) -> list[Path]:
    return sorted(p for d in ("spans", "logs") for p in (root / d).glob("*/*/*/*.parquet"))


def _trace_ids(path: Path) -> set[bytes]:
    return set(pq.read_table(path, columns=["trace_id"]).column("trace_id").to_pylist())


def _clean(root: Path):
    report = verify_store(root)
    assert report.ok, [f.to_dict() for f in report.problems]
    return report


def test_nothing_is_retired_before_every_row_is_past_retention(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    before = _files(root)
    # The last hour ends at START + 3h: seven days later it is not past yet.
    report = apply_retention(root, WEEK, now=START + timedelta(days=7, hours=2))
    assert [Path(root / v.path) for v in report.retired] == \
        [p for p in before if "hour=08" in str(p) or "hour=09" in str(p)]
    assert all("hour=10" in str(p) for p in _files(root))
    report = apply_retention(root, WEEK, now=START + timedelta(days=8))
    assert report.retired and not _files(root)
    assert not list((root / "spans").glob("*/*"))  # empty hours and dates are removed
    v = _clean(root)
    assert v.retired == len(before) and v.files == 0


def test_a_held_trace_keeps_its_file_whole_and_stays_searchable(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    files = _files(root)
    # A file with several traces: hold only one of them.
    target = next(p for p in files if len(_trace_ids(p)) > 1)
    rows = pq.read_metadata(target).num_rows
    held = sorted(_trace_ids(target))[0]
    hold = add_hold(root, traces=[held.hex()], reason="INC-1", user="ana")
    report = apply_retention(root, WEEK, now=LATER + timedelta(days=30))
    assert [v.path for v in report.held] == [target.relative_to(root).as_posix()]
    assert report.held[0].holds == [hold.id]
    assert _files(root) == [target] and pq.read_metadata(target).num_rows == rows
    with Store(root) as st:
        assert {r["span_id"] for r in st.trace(held.hex()).rows}
    v = _clean(root)
    assert v.retired == len(files) - 1
    # Removing the hold lets the next run retire the file, and both are logged.
    remove_hold(root, hold.id, reason="closed", user="ana")
    assert apply_retention(root, WEEK, now=LATER + timedelta(days=30)).retired
    assert not _files(root)
    [h] = read_holds(root)
    assert h.released["user"] == "ana" and h.released["reason"] == "closed"
    assert _clean(root).retired == len(files)


def test_a_service_hold_covers_its_time_range_only(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    add_hold(root, service="s", since=START + timedelta(hours=1),
             until=START + timedelta(hours=2))
    add_hold(root, service="another-service", reason="covers nothing")
    apply_retention(root, WEEK, now=LATER + timedelta(days=30))
    assert _files(root) and all("hour=09" in str(p) for p in _files(root))
    _clean(root)


def test_a_hold_on_another_tenant_does_not_keep_this_ones_data(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    some = sorted(_trace_ids(_files(root)[0]))[0]
    add_hold(root, traces=[some.hex()], tenant="other")
    apply_retention(root, WEEK, now=LATER + timedelta(days=30))
    assert not _files(root)


def test_per_tenant_days_and_a_tenant_kept_forever(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    n = len(_files(root))
    forever = RetentionPolicy(days=1, tenants={"acme": None})
    assert not apply_retention(root, forever, now=LATER + timedelta(days=400)).retired
    assert len(_files(root)) == n
    long = RetentionPolicy(days=1, tenants={"acme": 365})
    assert not apply_retention(root, long, now=LATER + timedelta(days=300)).retired
    assert len(apply_retention(root, long, now=LATER + timedelta(days=400)).retired) == n


def test_compaction_then_retention_retires_the_merged_file_and_verifies(base_stores,
                                                                        tmp_path):
    root = copy_store(base_stores["compacted"], tmp_path / "s")
    merged = _files(root)
    assert all(p.name.startswith("compacted-") for p in merged)
    apply_retention(root, WEEK, now=LATER + timedelta(days=30))
    assert not _files(root) and not list(root.glob("spans/*/*/*/_*.tids"))
    assert _clean(root).retired == len(merged)


def test_compliance_mode_extends_but_never_shortens(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    now = START + timedelta(days=1)
    strict = RetentionPolicy(mode="compliance", days=30, tenants={"acme": 60})
    assert apply_retention(root, strict, now=now).policy_recorded
    refused = [RetentionPolicy(mode="compliance", days=29, tenants={"acme": 60}),
               RetentionPolicy(mode="compliance", days=30, tenants={"acme": 10}),
               RetentionPolicy(mode="compliance", days=30),  # acme falls back to 30 < 60
               RetentionPolicy(mode="governance", days=30, tenants={"acme": 60})]
    for shorter in refused:
        with pytest.raises(RetentionRefused, match="compliance"):
            apply_retention(root, shorter, now=now)
        with pytest.raises(RetentionRefused):
            apply_retention(root, shorter, now=now, dry_run=True)
    assert recorded_policy(root)[0] == strict
    longer = RetentionPolicy(mode="compliance", days=90, tenants={"acme": None})
    assert apply_retention(root, longer, now=now).policy_recorded
    assert recorded_policy(root)[0].to_entry() == longer.to_entry()
    # Governance mode may shorten: it is recorded as the new policy in force.
    other = copy_store(base_stores["plain"], tmp_path / "g")
    apply_retention(other, RetentionPolicy(days=30), now=now)
    assert apply_retention(other, RetentionPolicy(days=7), now=now).policy_recorded
    assert recorded_policy(other)[0].days == 7


def test_a_file_removed_without_a_tombstone_fails_verify(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    first = _files(root)[0]
    add_hold(root, traces=[t.hex() for t in _trace_ids(first)])
    apply_retention(root, WEEK, now=LATER + timedelta(days=30))
    assert _files(root) == [first]
    first.unlink()
    report = verify_store(root)
    assert {(f.cls, f.obj) for f in report.problems} == \
        {("deleted", first.relative_to(root).as_posix())}


def test_a_file_changed_before_retention_is_not_laundered(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    target, broken = _files(root)[:2]
    table = pq.read_table(target)  # another valid Parquet file in its place: one row edited
    names = table.column("name").to_pylist()
    table = table.set_column(table.schema.get_field_index("name"), "name",
                             pa.array(["edited", *names[1:]]))
    pq.write_table(table, target)
    data = broken.read_bytes()  # and one that no longer reads at all (cut short)
    broken.write_bytes(data[:len(data) // 2])
    report = apply_retention(root, WEEK, now=LATER + timedelta(days=30))
    assert not target.exists() and broken.exists()
    assert [s.split(":")[0] for s in report.skipped] == [broken.relative_to(root).as_posix()]
    v = verify_store(root)
    assert {(f.cls, f.obj) for f in v.problems} == {
        ("modified", target.relative_to(root).as_posix()),
        ("modified", broken.relative_to(root).as_posix())}


def test_a_crash_between_tombstone_and_unlink_is_a_note_then_finished(base_stores, tmp_path,
                                                                     monkeypatch):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    files = _files(root)

    def crash(_root, path):
        raise KeyboardInterrupt  # the process dies after the tombstone, before the unlink

    monkeypatch.setattr(apply_mod, "_remove", crash)
    with pytest.raises(KeyboardInterrupt):
        apply_retention(root, WEEK, now=LATER + timedelta(days=30))
    monkeypatch.undo()
    assert _files(root) == files
    report = _clean(root)
    assert [f.cls for f in report.notes] == ["retirement_interrupted"]
    # Collector start (or the next run) finishes it, and only it.
    runner = RetentionRunner(root, None)
    runner.start()
    runner.stop()
    assert _files(root) == files[1:] and runner.error is None
    assert complete_interrupted(root) == 0
    report = _clean(root)
    assert not report.findings and report.retired == 1


def test_holds_refuse_bad_selections(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    with pytest.raises(BadInput, match="exactly one"):
        add_hold(root, traces=["ab" * 16], service="s")
    with pytest.raises(BadInput, match="32 hexadecimal"):
        add_hold(root, traces=["nope"])
    with pytest.raises(BadInput, match="go with --service"):
        add_hold(root, traces=["ab" * 16], since=START)
    with pytest.raises(NotFound, match="aitrail changes"):
        add_hold(root, change="no-such-change")
    with pytest.raises(NotFound, match="no pinned traces"):
        add_hold(root, incident="INC-404")
    add_hold(root, traces=["ab" * 16], hold_id="matter-7")
    with pytest.raises(BadInput, match="exists already"):
        add_hold(root, traces=["ab" * 16], hold_id="matter-7")
    with pytest.raises(NotFound):
        remove_hold(root, "matter-8")
    remove_hold(root, "matter-7")
    with pytest.raises(BadInput, match="already removed"):
        remove_hold(root, "matter-7")


def test_an_incident_hold_also_covers_traces_pinned_later(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    a, b = _files(root)[0], _files(root)[-1]
    ws = Workspace(root, user="ana")
    ws.pin("INC-9", sorted(_trace_ids(a))[0].hex())
    hold = add_hold(root, incident="INC-9")
    assert len(hold.trace_ids) == 1
    ws.pin("INC-9", sorted(_trace_ids(b))[0].hex())
    apply_retention(root, WEEK, now=LATER + timedelta(days=30))
    assert _files(root) == [a, b]
    _clean(root)


def test_the_collector_runner_applies_the_policy_on_its_own(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    runner = RetentionRunner(root, RetentionPolicy(days=7, interval_s=3600),
                             clock=lambda: LATER + timedelta(days=30))
    runner.start()
    try:
        assert runner.ran.wait(30)
    finally:
        runner.stop()
    assert runner.error is None and runner.last.retired and not _files(root)
    _clean(root)


def test_a_tombstone_records_file_hash_policy_and_holds(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    add_hold(root, traces=["ab" * 16], hold_id="h1")
    report = apply_retention(root, WEEK, now=LATER + timedelta(days=30))
    lines = (root / "_integrity" / "retention" / "log").read_bytes().splitlines()
    entries = [orjson.loads(x) for x in lines]
    assert [e["kind"] for e in entries][:2] == ["hold", "policy"]
    tombs = [e for e in entries if e["kind"] == "retire"]
    assert len(tombs) == len(report.retired)
    t = tombs[0]
    assert t["reason"] == "retention" and t["holds_considered"] == ["h1"]
    assert t["policy"]["retention_days"] == 7 and t["policy"]["tenant"] == "acme"
    assert len(t["sha256"]) == 64 and t["rows"] > 0 and t["newest"] < t["cutoff"]


@settings(max_examples=10, deadline=None, database=None)
@given(seed=st.integers(0, 10**6), hours=st.integers(1, 3), compact=st.booleans(),
       held=st.sets(st.integers(0, 11), max_size=3), age_h=st.integers(0, 24 * 12),
       days=st.integers(1, 10))
def test_generated_stores_keep_every_held_or_recent_row_and_verify(seed, hours, compact,
                                                                   held, age_h, days):
    with tempfile.TemporaryDirectory() as tmp:
        root = build(Path(tmp) / "s", flushes=2, traces=3, hours=hours, seed=seed)
        if compact:
            assert not compact_store(root, now=LATER, grace_s=0).skipped
        all_ids = sorted(set().union(*(_trace_ids(p) for p in _files(root))))
        held_ids = {all_ids[i % len(all_ids)] for i in held}
        if held_ids:
            add_hold(root, traces=[t.hex() for t in held_ids])
        now = START + timedelta(hours=age_h)
        cutoff = int((now - timedelta(days=days)).timestamp()) * 10**9
        before = {p: pq.read_table(p) for p in _files(root)}
        apply_retention(root, RetentionPolicy(days=days), now=now)
        for p, table in before.items():
            needed = bool(set(table.column("trace_id").to_pylist()) & held_ids) or pc.max(
                table.column("start_time_unix_nano")).as_py() >= cutoff
            if needed:
                assert p.exists(), p  # held or not past retention: kept whole
        for p in _files(root):
            assert _trace_ids(p) & held_ids or pc.max(pq.read_table(
                p, columns=["start_time_unix_nano"]).column(0)).as_py() >= cutoff - 3600 * 10**9
        report = _clean(root)
        assert report.retired == len(before) - len(_files(root))
