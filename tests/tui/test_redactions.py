"""A leaked key, as a responder meets it: the span shows what was masked (rule, place,
fingerprint), and a pivot on the fingerprint lists every trace the key appeared in. The store
is built by `aitrail ingest`'s Ingester from an OTLP/JSON file, redaction on (the defaults)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from aitrail.store.ingest import Ingester
from aitrail.store.redaction import fingerprint, key_path
from aitrail.tui.aicall import SpanScreen
from aitrail.tui.app import make_app
from aitrail.tui.pivot import PivotPicker, PivotScreen
from aitrail.tui.trace import TraceScreen
from aitrail.tui.widgets import WaterfallView

from ..store.redaction_samples import LEAK_TRACES, leak_story
from .conftest import press, screen_text, settle

pytestmark = pytest.mark.anyio


@pytest.fixture
def leak(tmp_path: Path) -> tuple[Path, str, str]:
    doc, token, aws = leak_story()
    (tmp_path / "leak.json").write_bytes(orjson.dumps(doc))
    root = tmp_path / "store"
    report = Ingester(root).add_files([tmp_path / "leak.json"])
    assert report.ok and report.spans == 4
    return root, token, aws


async def test_the_span_shows_its_redactions_and_the_fingerprint_pivot_lists_the_traces(leak):
    root, token, aws = leak
    fp = fingerprint(key_path(root).read_bytes(), token)
    app = make_app(root, user="resp-a")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open(TraceScreen(LEAK_TRACES[0]))
        await settle(pilot)
        assert "redacted" in screen_text(app)  # the waterfall's tag
        assert app.screen.query_one(WaterfallView).current["name"] == "chat gpt-4o"
        await press(pilot, "enter")
        assert isinstance(app.screen, SpanScreen)
        await press(pilot, "G")  # the redactions section closes the view
        text = screen_text(app)
        assert "1 secret(s) masked in 1 place(s)" in text
        assert f"github-pat  fp {fp}" in text
        assert "attributes.gen_ai.input.messages[0].parts[0].content" in text
        assert token not in text

        await press(pilot, "v")
        assert isinstance(app.screen, PivotPicker)
        assert f"secret {fp} (github-pat)" in screen_text(app)
        await press(pilot, "enter")  # the first pivot offered: the leaked key
        assert isinstance(app.screen, PivotScreen)
        assert app.screen.pivot.value == fp
        text = screen_text(app)
        assert f"secret {fp} (github-pat) appeared in 3 traces (3 spans)" in text
        assert {r["trace_id"] for r in app.screen.rows} == set(LEAK_TRACES)
        details = {r["trace_id"]: r["detail"] for r in app.screen.rows}
        assert details[LEAK_TRACES[1]] == (
            "github-pat at attributes.gen_ai.tool.call.arguments.remote")
        assert token not in text and aws not in text

        # Enter on a row opens that trace at that span
        await press(pilot, "enter")
        assert isinstance(app.screen, TraceScreen)
        assert app.screen.trace_id in LEAK_TRACES
