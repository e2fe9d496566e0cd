"""Pilot helpers: a private copy of the sample store per test (the TUI writes its
workspace into the store), waiting for store workers, and the screen as plain text."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot


@pytest.fixture
def store(sample_store: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(sample_store, root)
    return root


async def settle(pilot: Pilot) -> None:
    """Until no worker runs and every message they caused has been handled."""
    for _ in range(50):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.is_running for w in pilot.app.workers):
            await pilot.pause()
            return
    raise AssertionError("workers never settled")


async def wait_until(pilot: Pilot, cond: Callable[[], bool], what: str,
                     tries: int = 200) -> None:
    """Poll a condition between event-loop turns (for timers), never a blind sleep."""
    for _ in range(tries):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def screen_text(app: App) -> str:
    """What the terminal shows now, as plain text lines."""
    return "\n".join("".join(seg.text for seg in strip)
                     for strip in app.screen._compositor.render_strips())


async def press(pilot: Pilot, *keys: str) -> None:
    for k in keys:
        await pilot.press(k)
        await settle(pilot)


async def type_text(pilot: Pilot, text: str) -> None:
    await pilot.press(*text)
    await settle(pilot)


@pytest.fixture
def anyio_backend() -> str:
    """Pilot tests run on asyncio through anyio's pytest plugin (no extra dependency)."""
    return "asyncio"
