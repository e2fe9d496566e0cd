"""`aitrail reindex` and the [mapping] config: audit columns recomputed from the lossless part."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from aitrail.cli import main
from aitrail.store.config import load_config
from aitrail.store.errors import ConfigError
from aitrail.store.query import Store

from ..conftest import SAMPLES


def _raw(root):
    with Store(root) as store:
        return store.raw_rows()


def test_reindex_without_changes_leaves_every_row_identical(sample_store, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sample_store, copy)
    before = _raw(copy)
    assert main(["--store", str(copy), "reindex"]) == 0
    assert _raw(copy) == before


def test_a_mapping_change_applies_to_stored_data_after_reindex(tmp_path, capsys):
    store = tmp_path / "s"
    assert main(["--store", str(store), "ingest", str(SAMPLES[1])]) == 0
    capsys.readouterr()
    config = tmp_path / "aitrail.toml"
    # Map a key the migration incident carries onto user_id, ahead of the built-in keys.
    config.write_text('[mapping]\nuser_id = ["vcs.ref.head.name"]\n')
    query = ["sql", "select count(*) as n from spans where user_id like 'agent/%'",
             "--format", "json"]
    assert main(["--store", str(store), *query]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 0}]
    assert main(["--store", str(store), "--config", str(config), "reindex"]) == 0
    assert "reindexed" in capsys.readouterr().out
    assert main(["--store", str(store), *query]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n"] > 0


def test_an_unknown_mapping_column_is_a_clear_config_error(tmp_path, capsys):
    config = tmp_path / "aitrail.toml"
    config.write_text('[mapping]\nmodel_name = ["x"]\n')
    try:
        load_config(config)
    except ConfigError as e:
        assert "model_name" in str(e) and "request_model" in str(e)
    else:
        raise AssertionError("no ConfigError")
    assert main(["--config", str(config), "--store", str(tmp_path), "changes"]) == 2
    assert "not a mappable audit column" in capsys.readouterr().err


def test_broken_toml_names_the_file(tmp_path, capsys):
    config = tmp_path / "aitrail.toml"
    config.write_text("[mapping\n")
    assert main(["--config", str(config), "--store", str(tmp_path), "changes"]) == 2
    assert f"{config}: not valid TOML" in capsys.readouterr().err


def test_store_never_imports_textual_or_grpc():
    code = ("import sys, aitrail.store.query, aitrail.store.ingest, aitrail.store.reindex, "
            "aitrail.store.replay, aitrail.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'grpc')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
