"""Incident pins and notes, and the read audit: append-only files beside the record."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import pytest

from aitrail.store.errors import BadInput
from aitrail.store.query import Store
from aitrail.store.workspace import (
    ACCESS_FILE,
    INCIDENTS_FILE,
    WORKSPACE_DIR,
    Workspace,
    attach_views,
)


@pytest.fixture
def store(sample_store: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(sample_store, root)
    return root


def test_pins_and_notes_add_up_per_incident_and_unpin_removes(tmp_path):
    a, b = Workspace(tmp_path, user="a"), Workspace(tmp_path, user="b")
    a.pin("INC-1", "t1", "s1", "retrieval")
    b.pin("INC-1", "t1", "s1", "again")  # the same pin twice is one pin
    b.pin("INC-1", "t2")
    a.note("INC-1", "tenant filter missing", "t1", "s1")
    a.pin("INC-2", "t3")
    b.unpin("INC-1", "t2")
    incidents = {i.name: i for i in Workspace(tmp_path).incidents()}
    assert [(p["trace_id"], p["span_id"], p["user"]) for p in incidents["INC-1"].pins] == [
        ("t1", "s1", "a")]
    assert [n["text"] for n in incidents["INC-1"].notes] == ["tenant filter missing"]
    # most recently touched first: the unpin came last
    assert [i.name for i in Workspace(tmp_path).incidents()] == ["INC-1", "INC-2"]
    assert Workspace(tmp_path).incident("nope").pins == []


def test_workspace_never_writes_into_the_record(store):
    before = sorted(p for p in store.rglob("*") if p.is_file())
    ws = Workspace(store, user="r")
    ws.pin("INC", "t")
    ws.log_access("open_replay", "change x", change_id="x")
    after = sorted(p for p in store.rglob("*") if p.is_file())
    new = set(after) - set(before)
    assert new == {store / WORKSPACE_DIR / INCIDENTS_FILE, store / WORKSPACE_DIR / ACCESS_FILE}


def test_a_torn_last_line_is_skipped_and_the_next_append_stays_whole(tmp_path):
    ws = Workspace(tmp_path, user="r")
    ws.note("INC", "first")
    path = tmp_path / WORKSPACE_DIR / INCIDENTS_FILE
    with path.open("ab") as f:
        f.write(b'{"op": "note", "incident": "INC", "text": "torn')  # crash mid-write
    ws.note("INC", "second")
    assert [n["text"] for n in ws.incident("INC").notes] == ["first", "second"]


def _append_many(root: str, who: str) -> None:
    ws = Workspace(root, user=who)
    for i in range(50):
        ws.log_access("open_ai_call", f"{who} {i}", trace_id="t" * 32, detail="x" * 3000)


def test_concurrent_appenders_never_interleave_lines(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), f"p{n}"))
             for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = Workspace(tmp_path).access_log(limit=1000).rows
    assert len(rows) == 200
    assert {r["target"] for r in rows} == {f"p{n} {i}" for n in range(4) for i in range(50)}


def test_access_log_is_a_view_and_an_api(store):
    with Store(store) as st:
        attach_views(st)
        assert st.sql("select * from access_log").rows == []  # no file yet: empty, no error
        ws = Workspace(store, user="auditor")
        ws.log_access("open_ai_call", "llm chat", trace_id="ab" * 16, span_id="cd" * 8)
        ws.log_access("export", "trace ab", trace_id="ab" * 16)
        attach_views(st)
        res = st.sql("select user, action, span_id from access_log order by time")
        assert [tuple(r.values()) for r in res.rows] == [
            ("auditor", "open_ai_call", "cd" * 8), ("auditor", "export", None)]
        assert str(st.sql("select typeof(time) as t from access_log limit 1").rows[0]["t"]
                   ).startswith("TIMESTAMP")
    newest = Workspace(store).access_log(limit=1)
    assert newest.rows[0]["action"] == "export" and newest.truncated


def test_bad_input_is_refused(tmp_path):
    ws = Workspace(tmp_path, user="r")
    with pytest.raises(BadInput):
        ws.pin("   ", "t")
    with pytest.raises(BadInput):
        ws.note("INC", "  ")
    with pytest.raises(BadInput, match="unknown access action"):
        ws.log_access("delete_everything", "x")


def test_incident_log_view_joins_pins_to_spans(store):
    Workspace(store, user="r").pin("INC-7", "a037a304a4cae490e5bc07c64abe83a5",
                                   "9431cd1398d894f6", "retrieval")
    with Store(store) as st:
        attach_views(st)
        rows = st.sql("select i.incident, s.name from incident_log i join spans s "
                      "using (trace_id, span_id) where i.op = 'pin'").rows
    assert rows == [{"incident": "INC-7", "name": "retrieve_similar_tickets"}]
