"""The search bar's little language and the filter form that writes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitrail.tui import filters
from aitrail.tui.app import make_app
from aitrail.tui.filter_form import FilterForm

from .conftest import press, screen_text, settle, type_text

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_bar_text_becomes_search_filters():
    q = filters.parse('verdict:review kind:llm since:7d until:2026-11-20 "lock timeout" x',
                      now=NOW)
    assert q.filters == {"verdict": "review", "ai_kind": "llm", "since": NOW - timedelta(days=7),
                         "until": datetime(2026, 11, 20, tzinfo=UTC),
                         "text": "lock timeout x"}
    assert q.shown[0] == "verdict=review"


def test_unknown_keys_are_text_and_bad_times_and_quotes_are_errors():
    assert filters.parse("colour:red").filters == {"text": "colour:red"}
    with pytest.raises(filters.FilterError, match="neither ISO"):
        filters.parse("since:soon")
    with pytest.raises(filters.FilterError, match="quotes"):
        filters.parse('"open')


def test_adding_a_facet_value_replaces_that_key():
    assert filters.add_filter("service:a text", "service", "b c") == "text 'service:b c'"


values = st.text(alphabet="abcdefgh-_.:/ 0123", min_size=1, max_size=12).map(str.strip).filter(
    lambda v: v and ":" not in v[:1])


@given(st.dictionaries(st.sampled_from([*filters.KEYS, "text"]), values, max_size=6))
def test_form_fields_round_trip_through_the_bar(fields):
    text = filters.from_fields(fields)
    back = filters.to_fields(text)
    expected = {k: " ".join(v.split()) if k == "text" else v for k, v in fields.items()}
    if "text" in expected:
        # free text that looks like `key:value` is read back as that filter: by design
        words = expected["text"].split()
        if any(w.partition(":")[0] in filters.KEYS and w.partition(":")[2] for w in words):
            return
    assert {k: " ".join(v.split()) if k == "text" else v for k, v in back.items()} == expected


@pytest.mark.anyio
async def test_filter_form_writes_the_bar_and_searches(store):
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await press(pilot, "e")
        assert isinstance(app.screen, FilterForm)
        app.screen.query_one("#f-service").value = "coding-agent"
        app.screen.query_one("#f-verdict").focus()
        await type_text(pilot, "review")
        await press(pilot, "enter")
        assert app.screen.query_one("#filter").value == "service:coding-agent verdict:review"
        assert "1 trace (service=coding-agent, verdict=review)" in screen_text(app)
