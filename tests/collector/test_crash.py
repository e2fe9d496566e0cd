"""Kill the real `aitrail serve` under load, over and over: what it acknowledged survives,
exactly once (the harness is shared with benchmarks/crash_soak.py for longer runs)."""

from __future__ import annotations

import subprocess

from .crash_harness import Server, serve_command, soak, writer_ids

TRIALS = 20  # ~1.5 s each; `benchmarks/crash_soak.py --trials 200` for a longer soak
SEED = 4817


def test_acknowledged_spans_survive_random_kills_exactly_once(tmp_path):
    result = soak(tmp_path / "store", trials=TRIALS, seed=SEED, log=tmp_path / "serve.log")
    kills = [t for t in result.trials if t.signal == "KILL"]
    assert len(result.trials) == TRIALS and len(kills) >= TRIALS // 2
    # soak() raised if any acknowledged span was missing, stored twice, or unknown; these
    # say that the run was not vacuous: spans were acknowledged and kills left WAL records
    # that a restart replayed.
    assert result.acked > 1000
    assert result.stored >= result.acked
    assert sum(t.replayed > 0 for t in result.trials) >= TRIALS // 4
    # Both collector processes took connections and flushed spans of their own.
    for writer in writer_ids("crash"):
        assert list((tmp_path / "store" / "spans").glob(f"*/*/*/{writer}-f*.parquet")), writer


def test_a_second_server_with_the_same_writer_id_refuses_to_start(tmp_path):
    store = tmp_path / "store"
    with Server(store, "dup", tmp_path / "serve.log") as first:
        second = subprocess.run(serve_command(store, "dup"), capture_output=True, text=True,
                                timeout=60)
        assert second.returncode != 0
        assert "--writer-id" in second.stderr
        first.terminate()
        assert first.wait(60.0) == 0


def test_sigterm_as_soon_as_the_startup_line_appears_drains_and_exits_0(tmp_path):
    # A supervisor may stop the collector the moment it reports ready; the signal must not
    # arrive before its handler (it did, about one start in fifteen).
    for _ in range(10):
        with Server(tmp_path / "store", "quick", tmp_path / "serve.log") as server:
            server.terminate()
            assert server.wait(60.0) == 0
        assert server.output[-1].startswith("aitrail serve: stopped;")
