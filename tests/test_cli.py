"""The `aitrail` command end to end: the real console script on real files."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aitrail.cli import main
from aitrail.store.declarations import read_declaration
from aitrail.store.redaction import key_path

from .conftest import SAMPLES

AITRAIL = str(Path(sys.executable).parent / "aitrail")
MIGRATION_CHANGE = "chg-billing-migration-4821"


def run(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AITRAIL, "--store", str(store), *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_ingest_then_sql_lists_every_ai_kind(tmp_path):
    done = run("ingest", *map(str, SAMPLES), store=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ingested" in done.stdout
    out = run("sql", "select ai_kind, count(*) as n from spans group by 1 order by 1",
              "--format", "json", store=tmp_path)
    assert out.returncode == 0, out.stderr
    kinds = {r["ai_kind"] for r in json.loads(out.stdout)}
    assert {"llm", "retrieval", "tool", "agent", "guardrail", "review", "change"} <= kinds


def test_replay_of_the_migration_change_prints_each_step_in_order(sample_store):
    done = run("replay", MIGRATION_CHANGE, store=sample_store)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    order = [text.find(f" {label} ") for label in ("RETRIEVED", "MODEL", "POLICY", "REVIEW")]
    assert all(i > 0 for i in order), text
    assert order == sorted(order), "steps are not in time order"
    assert "in:user" in text and "out:assistant" in text  # prompt and output
    assert "verdict review" in text
    assert "dana@acme.example: approved" in text
    deploy = text.find("lock timeout")
    assert deploy > order[-1], "the failed deploy comes after the review"


def test_replay_json_steps_have_increasing_times(sample_store, capsys):
    assert main(["--store", str(sample_store), "replay", MIGRATION_CHANGE,
                 "--format", "json"]) == 0
    steps = json.loads(capsys.readouterr().out)
    times = [s["time"] for s in steps]
    assert times == sorted(times) and len(steps) >= 6
    assert {s["label"] for s in steps} >= {"MODEL", "RETRIEVED", "REVIEW", "CHANGE"}


def test_show_otlp_json_ingests_back_into_identical_rows(sample_store, tmp_path, capsys):
    assert main(["--store", str(sample_store), "sql", "select trace_id from spans "
                 "where change_id = 'chg-billing-migration-4821' limit 1",
                 "--format", "json"]) == 0
    trace_id = json.loads(capsys.readouterr().out)[0]["trace_id"]
    assert main(["--store", str(sample_store), "show", trace_id, "--format", "otlp-json"]) == 0
    exported = tmp_path / "trace.jsonl"
    exported.write_text(capsys.readouterr().out)
    other = tmp_path / "other"
    assert main(["--store", str(other), "ingest", str(exported)]) == 0
    capsys.readouterr()
    query = f"select * exclude (tenant) from spans where trace_id = '{trace_id}' order by span_id"
    assert main(["--store", str(sample_store), "sql", query, "--format", "json"]) == 0
    original = capsys.readouterr().out
    assert main(["--store", str(other), "sql", query, "--format", "json"]) == 0
    assert capsys.readouterr().out == original


def test_show_table_draws_the_span_tree(sample_store, capsys):
    main(["--store", str(sample_store), "sql", "select trace_id from spans where "
          "name like '%review%' limit 1", "--format", "json"])
    trace_id = json.loads(capsys.readouterr().out)[0]["trace_id"]
    assert main(["--store", str(sample_store), "show", trace_id]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"trace {trace_id}")
    assert "offset_ms" in out and "review" in out


def test_a_bad_file_is_reported_with_its_line_and_good_files_still_land(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    good_line = SAMPLES[0].read_text().splitlines()[0]
    bad.write_text(good_line + "\n{not json\n" + '{"resourceSpans": [{"scopeSpans": [{"spans": '
                   '[{"traceId": "zz", "spanId": "0102030405060708"}]}]}]}\n')
    gz = tmp_path / "good.jsonl.gz"
    gz.write_bytes(gzip.compress(SAMPLES[1].read_bytes()))
    store = tmp_path / "store"
    code = main(["--store", str(store), "ingest", str(bad), str(gz)])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{bad}:2: malformed JSON" in err
    assert f"{bad}:3:" in err and "not hex" in err
    assert main(["--store", str(store), "sql", "select count(distinct trace_id) as n, "
                 "count(*) as spans from spans", "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)[0]
    expected = len(json.loads(good_line)["resourceSpans"][0]["scopeSpans"][0]["spans"])
    assert got["spans"] > expected  # line 1 of bad.jsonl and all of good.jsonl.gz


def test_wrong_id_lengths_are_rejected_per_span_and_the_rest_kept(tmp_path, capsys):
    f = tmp_path / "ids.json"
    f.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "0102", "spanId": "0102030405060708", "name": "short trace id"},
        {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708",
         "name": "fine"}]}]}]}))
    assert main(["--store", str(tmp_path / "s"), "ingest", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:1: span 0102030405060708: trace_id must be 16 non-zero bytes" in err
    assert main(["--store", str(tmp_path / "s"), "sql", "select name from spans",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"name": "fine"}]


def test_protobuf_files_are_ingested(tmp_path, capsys):
    from aitrail.store.otlp_decode import decode_payload, read_file

    payload = next(read_file(SAMPLES[2]))
    (req,) = decode_payload(payload.kind, payload.data)
    f = tmp_path / "batch.binpb"
    f.write_bytes(req.SerializeToString())
    assert main(["--store", str(tmp_path / "s"), "ingest", str(f), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["spans"] == sum(
        len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


@pytest.mark.parametrize("query, message", [
    ("copy (select 1) to '/tmp/aitrail-x.csv'", "read-only"),
    ("create table t as select 1", "read-only"),
    ("select 1; select 2", "exactly one statement"),
    ("select * from read_csv('/etc/passwd')", "query failed"),
    ("select * from nope", "query failed"),
])
def test_sql_refuses_writes_and_reads_outside_the_store(sample_store, capsys, query, message):
    assert main(["--store", str(sample_store), "sql", query]) == 4
    assert message in capsys.readouterr().err


def test_unknown_trace_and_change_exit_3_with_a_hint(sample_store, capsys):
    assert main(["--store", str(sample_store), "show", "0" * 31 + "1"]) == 3
    assert "no trace" in capsys.readouterr().err
    assert main(["--store", str(sample_store), "replay", "chg-nope"]) == 3
    assert "aitrail changes" in capsys.readouterr().err


def test_malformed_trace_id_exits_2(sample_store, capsys):
    assert main(["--store", str(sample_store), "show", "xyz"]) == 2
    assert "32 hexadecimal" in capsys.readouterr().err


def test_traces_filters_by_verdict_and_free_text(sample_store, capsys):
    assert main(["--store", str(sample_store), "traces", "--verdict", "review",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all("review" in r["verdicts"] for r in rows)
    assert main(["--store", str(sample_store), "traces", "--text", "ALTER TABLE",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and any(MIGRATION_CHANGE in r["changes"] for r in rows)


def test_traces_limit_says_truncated(sample_store, capsys):
    assert main(["--store", str(sample_store), "traces", "--limit", "1"]) == 0
    assert "truncated" in capsys.readouterr().out


def test_empty_store_answers_queries(tmp_path, capsys):
    assert main(["--store", str(tmp_path), "sql", "select count(*) as n from spans",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 0}]


def test_tenant_names_that_would_escape_the_store_are_refused(tmp_path, capsys):
    assert main(["--store", str(tmp_path), "ingest", "--tenant", "../x", str(SAMPLES[0])]) == 2
    assert "invalid tenant" in capsys.readouterr().err


def test_help_teaches_the_first_commands():
    done = subprocess.run([AITRAIL, "--help"], capture_output=True, text=True, check=True)
    assert "aitrail ingest sample_traces" in done.stdout
    for command in ("ingest", "sql", "traces", "show", "replay", "changes", "reindex"):
        assert command in done.stdout


def test_parallel_ingest_writes_the_same_rows_as_one_process(tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["--store", str(one), "ingest", "--jobs", "1", *map(str, SAMPLES)]) == 0
    # Redaction fingerprints are keyed per store (the samples hold pasted credentials): the
    # second store gets the first one's key.
    key_path(two).parent.mkdir(mode=0o700, parents=True)
    shutil.copy2(key_path(one), key_path(two))
    assert main(["--store", str(two), "ingest", "--jobs", "2", *map(str, SAMPLES)]) == 0
    capsys.readouterr()
    query = "select * from spans order by tenant, trace_id, span_id"
    assert main(["--store", str(one), "sql", query, "--format", "json"]) == 0
    rows_one = capsys.readouterr().out
    assert main(["--store", str(two), "sql", query, "--format", "json"]) == 0
    assert capsys.readouterr().out == rows_one
    assert len(json.loads(rows_one)) > 100


def test_show_puts_the_enforced_action_next_to_the_verdict(sample_store, capsys):
    # Incident 03: the policy said "review" and enforced nothing.
    main(["--store", str(sample_store), "sql", "select trace_id from spans where change_id = "
          "'chg-oncall-restart-payments-1107' limit 1", "--format", "json"])
    trace_id = json.loads(capsys.readouterr().out)[0]["trace_id"]
    assert main(["--store", str(sample_store), "show", trace_id]) == 0
    assert "verdict=review enforced=none" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["before", "after"])
def test_tui_takes_the_store_either_side_and_refuses_to_start_without_a_terminal(
        sample_store, capsys, where):
    argv = (["--store", str(sample_store), "tui"] if where == "before"
            else ["tui", "--store", str(sample_store)])
    assert main(argv) == 2
    assert "tui needs a terminal" in capsys.readouterr().err


def test_sql_sees_the_access_log_view_even_before_anything_was_opened(sample_store, capsys):
    assert main(["--store", str(sample_store), "sql", "select count(*) as n from access_log",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 0}]


SAMPLE_CONFIG = str(Path(SAMPLES[0]).parent.parent / "aitrail.toml")


def test_declare_then_findings_names_the_oncall_restart(sample_store, tmp_path, capsys):
    store = tmp_path / "s"
    shutil.copytree(sample_store, store)
    decls = sorted(str(p) for p in Path(SAMPLE_CONFIG).parent.glob("*/ai_change.yaml"))
    base = ["--store", str(store), "--config", SAMPLE_CONFIG]
    assert main([*base, "declare", *decls, "--effective", "2026-11-01"]) == 0
    out = capsys.readouterr().out
    assert out.count("recorded ") == len(decls) and "next: aitrail findings" in out
    assert main([*base, "declare", decls[0]]) == 0
    assert capsys.readouterr().out.startswith("unchanged")
    assert main([*base, "findings", "--feature", "oncall-assistant", "--format", "json"]) == 0
    [finding] = json.loads(capsys.readouterr().out)
    assert finding["rule"] == "review_missing"
    assert finding["change_id"] == "chg-oncall-restart-payments-1107"
    assert main([*base, "findings", "--at", "2026-11-22"]) == 0
    table = capsys.readouterr().out
    assert "HIGH   forbidden_input" in table and "(9 findings)" in table
    assert main([*base, "sql", "select count(*) as n from findings", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n"] >= 8
    assert main([*base, "declarations", "--feature", "devhelper-answers"]) == 0
    version = read_declaration(Path(decls[3]))[0].version  # 04: the devhelper bot
    listed = capsys.readouterr().out
    assert version in listed and listed.count("devhelper-answers") == 1


def test_declare_reports_file_line_field_and_keeps_the_good_ones(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("feature: a\nallowed_actions: [x]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("feature: b\nlogging:\n  prompts: stored\n  retention_days: -3\n")
    store = tmp_path / "s"
    assert main(["--store", str(store), "declare", str(bad), str(good), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4: logging.retention_days: must be a whole number" in err
    assert not (store / "_declarations").exists()  # --check records nothing
    assert main(["--store", str(store), "declare", str(bad), str(good)]) == 1
    out = capsys.readouterr().out
    assert "recorded  a version" in out and "1 file(s) rejected" in out


def test_findings_without_declarations_says_what_to_do(sample_store, capsys):
    assert main(["--store", str(sample_store), "findings"]) == 0
    captured = capsys.readouterr()
    assert "aitrail declare FILE" in captured.err and "(0 findings)" in captured.out
