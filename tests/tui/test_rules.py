"""Rules the TUI keeps: no DuckDB and no SQL under aitrail/tui, every key documented."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
from textual.binding import Binding

import aitrail.tui
from aitrail.tui.app import make_app

from .conftest import press, screen_text, settle

TUI_DIR = Path(aitrail.tui.__file__).parent
MODULES = sorted(TUI_DIR.glob("*.py"))
SQL_TEXT = re.compile(
    r"\bselect\b[\s\S]*\bfrom\b|\binsert\s+into\b|\bdelete\s+from\b|\bupdate\s+\w+\s+set\b"
    r"|\b(create|drop|alter)\s+(or\s+replace\s+)?(view|table|macro|index)\b"
    r"|\bread_(parquet|json|csv)\s*\(", re.I)


def _strings(tree: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            names |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module:
            names.add(n.module)
    return names


def test_the_sql_detector_catches_sql():
    assert SQL_TEXT.search("SELECT trace_id\nFROM spans WHERE x = ?")
    assert SQL_TEXT.search("create or replace view x as ...")
    assert not SQL_TEXT.search("read-only: one SELECT over the views")


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_tui_never_imports_duckdb_or_holds_sql(path):
    tree = ast.parse(path.read_text())
    imports = _imports(tree)
    assert not {m for m in imports if m.split(".")[0] in ("duckdb", "pyarrow")}, imports
    found = [s for s in _strings(tree) if SQL_TEXT.search(s)]
    assert not found, f"{path.name} holds SQL: {found}"


def test_tui_package_has_the_modules_the_scan_covers():
    names = {p.name for p in MODULES}
    assert {"app.py", "search.py", "trace.py", "aicall.py", "replay_view.py", "pivot.py",
            "sql_console.py", "incidents.py", "audit.py"} <= names


def _binding_classes():
    for path in MODULES:
        mod = importlib.import_module(f"aitrail.tui.{path.stem}")
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__ and "BINDINGS" in cls.__dict__:
                yield cls


def test_every_binding_has_an_id_and_a_description():
    classes = list(_binding_classes())
    assert len(classes) >= 10
    ids = []
    for cls in classes:
        for b in cls.__dict__["BINDINGS"]:
            assert isinstance(b, Binding), (cls, b)
            assert b.id and b.description, f"{cls.__name__}: {b.key} needs id and description"
            ids.append(b.id)
    # ids are unique except where widgets share one meaning (list.down in every list)
    shared = {"list.down", "list.up", "list.first", "list.last"}
    dupes = {i for i in ids if ids.count(i) > 1} - shared
    assert not dupes


@pytest.mark.anyio
async def test_help_lists_the_screen_keys_with_their_ids(store):
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "enter", "question_mark")
        text = screen_text(app)
        assert "keys: trace" in text
        assert "trace.fold" in text and "Open span" in text
        await press(pilot, "escape")
        assert "keys: trace" not in screen_text(app)


@pytest.mark.anyio
async def test_command_palette_commands_read_area_colon_action(store):
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        ours = [t for t in titles if ":" in t]
        assert {"sql: open console", "incident: open workspace", "audit: open access log",
                "search: back to search", "help: show keys"} <= set(ours)
        assert "replay: chg-billing-migration-4821" in ours
        for t in ours:
            assert re.fullmatch(r"[a-z]+: \S.*", t), t
        await press(pilot, "ctrl+p")
        await pilot.press(*"sql: open")
        await settle(pilot)
        await press(pilot, "down", "enter")
        assert type(app.screen).__name__ == "SqlScreen"


def test_trace_find_text_uses_the_search_rule():
    """The span a trace opens on is one that search's words rule matches (whole words)."""
    from aitrail.tui.trace import first_match

    rows = [{"span_id": "a", "start_time": 1, "input_messages": "the lockdown began"},
            {"span_id": "b", "start_time": 2, "output_messages": "LOCK timeout, again"},
            {"span_id": "c", "start_time": 3, "documents": "lock timeout"}]
    assert first_match(rows, "lock timeout") == "b"
    assert first_match(rows, "lockd") is None
