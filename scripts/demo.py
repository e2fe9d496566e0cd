"""`make demo`: the real path end to end, on the embedded default store layout in
.demo-store/: start the collector, send the sample incidents over OTLP/gRPC, stop it (drain,
flush), then show what arrived, replay the migration incident, record the teams'
declarations and list where the traces break them, export the migration change as a bundle
and check it offline, and (on a terminal) open the TUI on it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / ".demo-store"
AITRAIL = [str(Path(sys.executable).parent / "aitrail"), "--store", str(STORE)]


def step(title: str, *args: str) -> None:
    print(f"\n$ aitrail {shlex.join(args)}", flush=True)
    done = subprocess.run([*AITRAIL, *args], check=False, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"demo: `aitrail {args[0]}` failed ({title})")


def main() -> int:
    shutil.rmtree(STORE, ignore_errors=True)
    print("$ aitrail serve --grpc 127.0.0.1:0 --http 127.0.0.1:0 --writer-id demo", flush=True)
    server = subprocess.Popen(
        [*AITRAIL, "serve", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0",
         "--writer-id", "demo"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        print(line, end="", flush=True)
        m = re.search(r"OTLP/gRPC on ([\d.]+):(\d+)", line)
        if not m:
            sys.exit("demo: the collector did not start")
        samples = sorted(str(p.relative_to(ROOT))
                         for p in ROOT.glob("sample_traces/*/traces.jsonl"))
        step("send", "send", "--endpoint", f"{m.group(1)}:{m.group(2)}", *samples)
    finally:
        server.send_signal(signal.SIGTERM)
        rest, _ = server.communicate(timeout=60)
        print(rest, end="", flush=True)
    if server.returncode != 0:
        sys.exit(f"demo: the collector exited with {server.returncode}")
    step("what arrived", "sql", "select ai_kind, count(*) as spans from spans group by 1 "
         "order by 2 desc")
    step("changes", "changes")
    step("replay", "replay", "chg-billing-migration-4821")
    # The declarations as the teams wrote them before the incidents (sample_traces/README.md).
    conf = ("--config", "sample_traces/aitrail.toml")
    decls = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("sample_traces/*/ai_change.yaml"))
    step("declare", *conf, "declare", "--effective", "2026-11-01", *decls)
    step("findings", *conf, "findings", "--at", "2026-11-22")
    (STORE / "exports").mkdir()
    bundle = str((STORE / "exports" / "chg-4821.tar.gz").relative_to(ROOT))
    step("export", "export", "--change", "chg-billing-migration-4821", "-o", bundle)
    step("verify the bundle offline", "verify", bundle)
    print("\nThe store is in .demo-store/: try `.venv/bin/aitrail --store .demo-store traces "
          "--verdict review`, or `.venv/bin/aitrail --store .demo-store tui`", flush=True)
    if sys.stdin.isatty() and sys.stdout.isatty():
        print("\n$ aitrail tui   (? for keys, q to quit)", flush=True)
        os.execv(AITRAIL[0], [*AITRAIL, "tui"])  # the demo ends in the terminal UI
    return 0


if __name__ == "__main__":
    sys.exit(main())
