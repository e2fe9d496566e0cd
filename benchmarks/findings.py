"""Findings benchmark: `aitrail findings` over a generated store of 1M spans.

The store is the one benchmarks/query.py builds (realistic AI traces from ingest_file.py's
load generator: retrieval, chat, tool, policy and change spans with their content, written
in collector-sized flushes). Every service of the load is declared as a feature stating
every field, so every rule runs: some tools and models are left undeclared on purpose, so
there are findings to list. Printed, in seconds (the machine is shared: read the ratio):

- baseline: DuckDB reading the `attributes` column of every span (what linking spans to a
  feature by their `aitrail.feature` attribute costs at least);
- the whole evaluation as `findings()` runs it (every finding: one scan materialized as
  Arrow, hyperscan for secret shapes), and through the `findings` SQL view (RE2);
- what `aitrail findings` does: open the store, attach, the newest 500 findings;
- the same for one feature (`--feature`, which narrows the scan before linking).
Each with the load average when it ran: on a shared machine, compare runs by the ratio.

    .venv/bin/python benchmarks/findings.py [--spans 1000000] [--store DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest_file import _MODELS, _SERVICES
from query import build

from aitrail.store.declarations import DeclarationLog, parse_declaration
from aitrail.store.findings import attach_findings, findings
from aitrail.store.query import Store


def declare_all(root: Path) -> dict[str, str]:
    """One declaration per service of the load, stating every field. Most hold; the first
    service's leaves out one of its tools and all but two models, so there is drift to find
    (and every span is still read and judged)."""
    log = DeclarationLog(root, user="bench")
    features = {}
    providers = ", ".join(sorted({p for p, _m, _r in _MODELS}))
    for i, (service, (_agents, tools, sources, _targets)) in enumerate(_SERVICES.items()):
        feature = f"{service}-ai"
        features[service] = feature
        models = "gpt-4o, gpt-4o-mini" if i == 0 else ", ".join(m for _p, m, _r in _MODELS)
        allowed = tools[1:] if i == 0 else tools
        text = (f"feature: {feature}\nmodel_provider: [{providers}]\nmodel: [{models}]\n"
                + (f"retrieval: {{source: {sources[0]}, permission_key: customer_id}}\n"
                   "human_review_required: true\n" if i == 0 else
                   "retrieval: {permission_key: customer_id}\nhuman_review_required: false\n")
                + f"allowed_actions: [{', '.join(allowed)}, '*.*']\n"
                "forbidden_inputs: [credentials, payment_card_data]\n"
                "logging: {prompts: stored_redacted, retention_days: 30}\n"
                "rollback: {kill_switch: ai_enabled, fallback: canned_reply}\n")
        log.declare(parse_declaration(text, f"{service}.yaml"), text, f"{service}.yaml",
                    datetime(2020, 1, 1, tzinfo=UTC))
    return features


def seconds(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--flush-spans", type=int, default=50_000)
    ap.add_argument("--store", type=Path, help="reuse or keep the store here")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    tmp = None
    root = args.store
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="aitrail-fbench-")
        root = Path(tmp.name)
    if not any(root.glob("spans/*/*/*/*.parquet")):
        t0 = time.perf_counter()
        n = build(root, args.spans, args.flush_spans, args.seed)
        print(f"built {n:,} spans in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    features = declare_all(root)

    def load() -> str:
        return f"load {os.getloadavg()[0]:.1f}"

    one = next(iter(features.values()))
    with Store(root) as st:
        spans = st.sql("select count(*) as n from _spans").rows[0]["n"]
        base, _ = seconds(lambda: st.con.execute(
            "select count(*) from _spans where contains(attributes, 'aitrail.feature')"
        ).fetchall(), args.repeat)
        at = [load()]
        attach_findings(st, features)
        whole, every = seconds(lambda: findings(st).rows, args.repeat)
        at.append(load())
        view, counts = seconds(lambda: st.con.execute(
            "select rule, count(*) from findings group by 1 order by 2 desc").fetchall(),
            args.repeat)
        at.append(load())

    def cli_path(feature: str | None = None) -> int:
        with Store(root) as st:
            attach_findings(st, features)
            return len(findings(st, feature=feature, limit=500).rows)

    cli, listed = seconds(cli_path, args.repeat)
    at.append(load())
    cli_one, listed_one = seconds(lambda: cli_path(one), args.repeat)
    at.append(load())
    by_rule: dict[str, int] = {}
    for r in every:
        by_rule[r["rule"]] = by_rule.get(r["rule"], 0) + 1
    print(f"store: {spans:,} spans, {len(features)} declared features")
    print(f"baseline: read every span's attributes      {base:7.2f} s              {at[0]}")
    print(f"findings(): the whole evaluation             {whole:7.2f} s  ({whole / base:4.1f}x)  "
          f"{at[1]}")
    print(f"the findings view (SQL, RE2), count(*)       {view:7.2f} s  ({view / base:4.1f}x)  "
          f"{at[2]}")
    print(f"aitrail findings: open, attach, 500 rows     {cli:7.2f} s  ({cli / base:4.1f}x)  "
          f"{at[3]}  ({listed} listed)")
    print(f"aitrail findings --feature {one}: {cli_one:5.2f} s  ({cli_one / base:4.1f}x)  "
          f"{at[4]}  ({listed_one} listed)")
    print("findings by rule: " + ", ".join(f"{rule} {n:,}" for rule, n in
                                           sorted(by_rule.items(), key=lambda kv: -kv[1])))
    if sorted(by_rule.items()) != sorted(counts):
        print(f"MISMATCH: the view counts {counts}", file=sys.stderr)
        return 1
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
