"""`aitrail send` through a real collector: files in, rows out; bad lines reported."""

from __future__ import annotations

import json

from aitrail.cli import main
from aitrail.store.query import Store

from ..conftest import SAMPLES


def test_send_delivers_every_sample_span_to_the_collector(collector, capsys):
    code = main(["send", "--endpoint", f"127.0.0.1:{collector.grpc_port}", "--format", "json",
                 *map(str, SAMPLES)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["errors"] == 0
    collector.pipeline.flush()
    with Store(collector.opts.store) as st:
        n = st.sql("select count(*) as n from spans").rows[0]["n"]
    assert n == summary["spans"] > 100


def test_send_reports_partial_rejections_with_file_and_line(collector, tmp_path, capsys):
    f = tmp_path / "mixed.jsonl"
    f.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "0102", "spanId": "0102030405060708", "name": "bad id"},
        {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708",
         "name": "good"}]}]}]}) + "\n{broken\n")
    code = main(["send", "--endpoint", f"127.0.0.1:{collector.grpc_port}", str(f)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"{f}:1: 1 span(s) rejected" in captured.err
    assert f"{f}:2: malformed JSON" in captured.err
    assert "sent 1 spans in 1 requests" in captured.out
