"""Stores built from sample_traces/ through the real ingest path, and bundles exported from
them with the real exporter; tests copy them before changing anything."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aitrail.store.bundle.export import Selection, export
from aitrail.store.ingest import Ingester
from aitrail.store.query import Store
from aitrail.store.workspace import Workspace
from tests.conftest import SAMPLES

CHANGE = "chg-billing-migration-4821"
MIGRATION = [p for p in SAMPLES if "02-migration" in str(p)]


def make_bundle(store: Path, dest: Path, selection: Selection, as_dir: bool = True,
                user: str = "tester") -> Path:
    with Store(store) as st:
        return export(st, Workspace(store, user), selection, dest, as_dir=as_dir).path


@pytest.fixture(scope="session")
def samples_copy(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every sample incident; export writes a checkpoint and the access log, so not the
    shared read-only sample store."""
    root = tmp_path_factory.mktemp("bundle-samples") / "store"
    shutil.copytree(sample_store, root)
    return root


@pytest.fixture(scope="session")
def all_bundle(samples_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory bundle of every sample trace (redacted ones included): read-only."""
    return make_bundle(samples_copy, tmp_path_factory.mktemp("b") / "all",
                       Selection("where", ["true"]))


@pytest.fixture(scope="session")
def change_bundle(samples_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The migration change as a .tar.gz: read-only."""
    return make_bundle(samples_copy, tmp_path_factory.mktemp("b") / "chg.tar.gz",
                       Selection("change", [CHANGE]), as_dir=False)


@pytest.fixture
def bundle(all_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the all-samples directory bundle."""
    dest = tmp_path / "bundle"
    shutil.copytree(all_bundle, dest)
    return dest


@pytest.fixture(scope="session")
def migration_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("migration") / "store"
    report = Ingester(root, "default").add_files(MIGRATION)
    assert report.ok and report.spans == 23
    return root
