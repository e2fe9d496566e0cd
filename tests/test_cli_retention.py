"""`aitrail retention` and `aitrail hold` end to end: the real console script, a store of the
sample incidents (all older than a day), a real aitrail.toml."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .test_cli import MIGRATION_CHANGE, run


def _config(tmp_path: Path, body: str, name: str = "aitrail.toml") -> str:
    path = tmp_path / name
    path.write_text(body)
    return str(path)


def test_hold_then_retention_keeps_the_held_change_and_verify_tells_retired_from_missing(
        sample_store, tmp_path):
    store = tmp_path / "s"
    shutil.copytree(sample_store, store)
    conf = _config(tmp_path, "[retention]\nretention_days = 1\n")
    files = sorted(store.glob("spans/*/*/*/*.parquet"))

    done = run("hold", "add", "--change", MIGRATION_CHANGE, "--id", "inc-4821",
               "--reason", "postmortem", store=store)
    assert done.returncode == 0, done.stderr
    assert "placed hold inc-4821" in done.stdout

    dry = run("--config", conf, "retention", "apply", "--dry-run", "--format", "json",
              store=store)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["held"] and all(h["holds"] == ["inc-4821"] for h in plan["held"])
    assert len(plan["retired"]) + len(plan["held"]) == len(files)
    assert sorted(store.glob("spans/*/*/*/*.parquet")) == files  # a dry run changes nothing

    done = run("--config", conf, "retention", "apply", store=store)
    assert done.returncode == 0, done.stderr
    assert f"retired {len(plan['retired'])} files" in done.stdout
    assert "(newly recorded)" in done.stdout
    left = sorted(store.glob("spans/*/*/*/*.parquet"))
    assert len(left) == len(plan["held"])

    # Held data stays searchable.
    found = run("traces", "--change", MIGRATION_CHANGE, "--format", "json", store=store)
    assert found.returncode == 0 and json.loads(found.stdout)

    verified = run("verify", store=store)
    assert verified.returncode == 0, verified.stdout
    assert f"{len(plan['retired'])} files retired under the retention policy" in \
        verified.stdout
    left[0].unlink()  # a file deleted by hand, without a tombstone
    verified = run("verify", "--format", "json", store=store)
    assert verified.returncode == 1
    assert [p["class"] for p in json.loads(verified.stdout)["problems"]] == ["deleted"]

    listed = run("hold", "list", "--format", "json", store=store)
    [hold] = json.loads(listed.stdout)
    assert hold["id"] == "inc-4821" and hold["active"] and hold["reason"] == "postmortem"
    done = run("hold", "remove", "inc-4821", "--reason", "closed", store=store)
    assert done.returncode == 0, done.stderr
    assert json.loads(run("hold", "list", "--format", "json", store=store).stdout) == []
    assert json.loads(run("hold", "list", "--all", "--format", "json",
                          store=store).stdout)[0]["released"]["reason"] == "closed"


def test_compliance_mode_refuses_a_shorter_policy_with_exit_2(sample_store, tmp_path):
    store = tmp_path / "s"
    shutil.copytree(sample_store, store)
    long = _config(tmp_path, '[retention]\nmode = "compliance"\nretention_days = 3650\n')
    assert run("--config", long, "retention", "apply", store=store).returncode == 0
    short = _config(tmp_path, '[retention]\nmode = "compliance"\nretention_days = 1\n', "b")
    done = run("--config", short, "retention", "apply", store=store)
    assert done.returncode == 2
    assert "compliance mode" in done.stderr and "3650" in done.stderr
    assert len(list(store.glob("spans/*/*/*/*.parquet"))) == \
        len(list(sample_store.glob("spans/*/*/*/*.parquet")))


def test_retention_without_a_policy_or_with_a_typo_exits_2(sample_store, tmp_path):
    done = run("retention", "apply", store=sample_store)
    assert done.returncode == 2 and "[retention]" in done.stderr
    typo = _config(tmp_path, "[retention]\nretention_day = 30\n")
    done = run("--config", typo, "retention", "apply", store=sample_store)
    assert done.returncode == 2 and "'retention_day'" in done.stderr
    bad = _config(tmp_path, "[retention.tenants.acme]\nretention_days = 0\n", "c")
    done = run("--config", bad, "retention", "apply", store=sample_store)
    assert done.returncode == 2 and "retention.tenants.acme" in done.stderr


def test_hold_add_needs_one_selection_and_says_how(sample_store):
    done = run("hold", "add", store=sample_store)
    assert done.returncode == 2 and "exactly one of --trace" in done.stderr
    done = run("hold", "add", "--change", "nope", store=sample_store)
    assert done.returncode == 3 and "aitrail changes" in done.stderr
    done = run("hold", "remove", store=sample_store)
    assert done.returncode == 2 and "hold list" in done.stderr
