"""Shared fixtures: stores built from sample_traces/ into temporary directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from aitrail.store.ingest import Ingester

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_traces").glob("*/traces.jsonl"))


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding every sample incident (read-only for tests: do not write to it)."""
    root = tmp_path_factory.mktemp("samples")
    report = Ingester(root, "default").add_files(SAMPLES)
    assert report.ok, report.errors + report.rejected
    assert report.spans > 0
    return root
