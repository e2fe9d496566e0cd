"""`aitrail`: one command, thin wiring over store/ (and, later, collector/ and tui/).

Exit codes: 0 success; 1 some input was rejected (the rest was kept), or for `verify`: the
store failed verification; 2 bad usage or configuration; 3 not found; 4 query error.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from . import __version__
from .output import embed_json, print_rows, to_json

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_QUERY = 0, 1, 2, 3, 4

EPILOG = """\
The store is --store, else $AITRAIL_STORE, else the `store` key of the config, else
$XDG_DATA_HOME/aitrail (~/.local/share/aitrail). The config is --config, else
$AITRAIL_CONFIG, else $XDG_CONFIG_HOME/aitrail/aitrail.toml if it exists.

Start here:
  aitrail ingest sample_traces/*/traces.jsonl
  aitrail sql "select ai_kind, count(*) from spans group by 1"
  aitrail changes
  aitrail replay chg-billing-migration-4821
"""


def _err(msg: str) -> None:
    sys.stderr.write(f"aitrail: {msg}\n")


def _parse_time(value: str) -> datetime:
    """ISO 8601 (UTC if no zone) or a relative age like 30m, 6h, 7d."""
    v = value.strip()
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    if v[:-1].isdigit() and v[-1:] in units:
        return datetime.now(UTC) - timedelta(**{units[v[-1]]: int(v[:-1])})
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither ISO 8601 (2026-11-12T14:00:00Z) nor an age (30m, 6h, 7d)"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _add_format(p: argparse.ArgumentParser, extra: tuple[str, ...] = ()) -> None:
    p.add_argument("--format", choices=("table", "json", *extra), default="table",
                   help="table for people (default); json: an array of objects, for scripts"
                   + (f"; {', '.join(extra)}" if extra else ""))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aitrail", description="Audit trace store and forensics for AI-influenced "
        "changes.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"aitrail {__version__}")
    p.add_argument("--store", type=Path, help="store directory (see below)")
    p.add_argument("--config", type=Path, help="aitrail.toml (see below)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("ingest", help="load OTLP trace files into the store",
                       description="Load OTLP trace files: JSON as the OpenTelemetry "
                       "Collector's file exporter writes it (one request per line, or one per "
                       "file), or binary protobuf; either may be gzip-compressed. A bad file "
                       "or line is reported as FILE:LINE: problem and the rest is still "
                       "ingested; the exit code is then 1.")
    s.add_argument("files", nargs="+", type=Path, metavar="FILE")
    s.add_argument("--tenant", default="default", help="tenant to file the spans under "
                   "(default: default)")
    s.add_argument("--jobs", type=int, help="worker processes that decode and normalize "
                   "(default: 1 for inputs under 8 MB, else one per core, at most 4)")
    _add_format(s)

    s = sub.add_parser("sql", help="run one read-only SQL query over the views",
                       description="Run one SELECT over the views spans, ai_calls, documents, "
                       "decisions, changes, findings, declarations (docs/schema.md). Only the "
                       "store can be read; nothing can be written.")
    s.add_argument("query")
    s.add_argument("--limit", type=int, default=1000, help="rows to print (default 1000)")
    _add_format(s)

    s = sub.add_parser("traces", help="search traces, newest first",
                       description="Traces with at least one span matching every filter.")
    for name, help_ in (("service", "service.name"), ("model", "request or response model"),
                        ("verdict", "policy verdict: allow, deny, review, modify"),
                        ("reviewer", "reviewer"), ("user", "end user id"),
                        ("change", "change id"), ("tenant", "tenant"),
                        ("ai-kind", "llm, retrieval, tool, guardrail, review, change, ..."),
                        ("text", "words in prompts, outputs, documents, tool calls: every word, "
                         "whole words, any case")):
        s.add_argument(f"--{name}", help=help_)
    s.add_argument("--since", type=_parse_time, help="ISO time or age (30m, 6h, 7d)")
    s.add_argument("--until", type=_parse_time, help="ISO time or age")
    s.add_argument("--limit", type=int, default=50, help="traces to list (default 50)")
    _add_format(s)

    s = sub.add_parser("show", help="show one trace",
                       description="Every span of a trace as a tree with timings and the audit "
                       "fields. --format otlp-json prints OTLP/JSON that `aitrail ingest` "
                       "reads back identically.")
    s.add_argument("trace_id", metavar="TRACE_ID")
    s.add_argument("--tenant")
    _add_format(s, ("otlp-json",))

    s = sub.add_parser("replay", help="the ordered steps of an AI-influenced change",
                       description="What the agent was asked, what it retrieved, what the model "
                       "saw and returned, tools called, policy verdicts, reviews and the "
                       "change itself, in time order across every trace of the change.")
    s.add_argument("change_id", metavar="CHANGE_ID")
    s.add_argument("--tenant")
    _add_format(s)

    s = sub.add_parser("changes", help="list AI-influenced changes")
    s.add_argument("--limit", type=int, default=50)
    _add_format(s)

    s = sub.add_parser(
        "declare", help="record AI change declarations (ai_change.yaml), versioned",
        description="Validate each YAML declaration (docs/declarations.md) and record it in "
        "the store's declaration log, with its version (a hash of its content), the time and "
        "who declared it. Every version is kept; a finding names the version in force when "
        "its span happened. Declaring unchanged content again records nothing. A bad file is "
        "reported as FILE:LINE: field: problem and the others are still recorded (exit code "
        "1). Spans belong to a feature by their aitrail.feature attribute, or by service "
        "name through [features] in aitrail.toml.")
    s.add_argument("files", nargs="+", type=Path, metavar="FILE")
    s.add_argument("--effective", type=_parse_time, metavar="TIME",
                   help="in force from this time (ISO time or age; default: now). For a "
                   "record the team agreed before it was first declared here")
    s.add_argument("--check", action="store_true",
                   help="validate only; record nothing (for CI on the declarations' repo)")
    _add_format(s)

    s = sub.add_parser("declarations", help="list recorded declaration versions",
                       description="Every recorded version of every feature's declaration, "
                       "oldest first: version, when declared, in force from, by whom, file.")
    s.add_argument("--feature", help="only this feature")
    _add_format(s)

    s = sub.add_parser(
        "findings", help="where the stored spans break the declarations",
        description="Evaluate the stored spans against the declaration version in force when "
        "each happened, and list every finding, newest first: rule, severity, feature, "
        "version, evidence spans and what to do. Rules: " + ", ".join(
            r.name for r in _rules()) + " (docs/declarations.md explains each). Also the "
        "SQL view `findings` (aitrail sql \"select * from findings\").")
    s.add_argument("--since", type=_parse_time, help="findings at or after this time (ISO "
                   "time or age: 30m, 6h, 7d)")
    s.add_argument("--until", type=_parse_time, help="findings before this time")
    s.add_argument("--feature", help="only this feature")
    s.add_argument("--rule", choices=[r.name for r in _rules()], metavar="RULE",
                   help="only this rule")
    s.add_argument("--at", type=_parse_time, metavar="TIME",
                   help="judge retention as of this time (default: now)")
    s.add_argument("--limit", type=int, default=500, help="findings to list (default 500)")
    _add_format(s)

    s = sub.add_parser("serve", help="run the OTLP collector (gRPC :4317, HTTP :4318)",
                       description="Receive OTLP traces over gRPC and HTTP and store them. A "
                       "request is acknowledged only once it is in the fsync'd write-ahead log. "
                       "Stops cleanly (drain, flush) on SIGTERM or Ctrl-C.")
    s.add_argument("--grpc", default="127.0.0.1:4317", metavar="HOST:PORT",
                   help="OTLP/gRPC address (default 127.0.0.1:4317; 'off' to disable)")
    s.add_argument("--http", default="127.0.0.1:4318", metavar="HOST:PORT",
                   help="OTLP/HTTP address (default 127.0.0.1:4318; 'off' to disable)")
    s.add_argument("--writer-id", help="this collector's name in file names and its WAL "
                   "directory; keep it stable across restarts (default: c-<hostname>)")
    s.add_argument("--insecure", action="store_true", help="allow listening beyond loopback "
                   "without [auth] tokens")
    s.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    s.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    s.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by "
                   "this CA (mutual TLS)")
    s.add_argument("--max-request-bytes", type=int, default=20 * 1024 * 1024,
                   help="largest request after decompression (default 20 MiB)")
    s.add_argument("--workers", type=int, help="collector processes sharing the ports "
                   "(SO_REUSEPORT), each with its own WAL and writer id <writer-id>-<i> "
                   "(default 1: one process already keeps about two cores busy; see the README)")
    s.add_argument("--compact-every", type=float, default=300, metavar="SECONDS",
                   help="compact closed tenant-hours this often (default 300; 0: never, "
                   "see `aitrail compact`)")

    s = sub.add_parser("send", help="send OTLP files to an OTLP/gRPC endpoint",
                       description="Send OTLP trace files (JSON or protobuf, gzip ok) to any "
                       "OTLP/gRPC endpoint: an aitrail collector or another backend. "
                       "Retryable refusals are retried with backoff; others are reported as "
                       "FILE:LINE and the rest is still sent (exit code 1).")
    s.add_argument("files", nargs="+", type=Path, metavar="FILE")
    s.add_argument("--endpoint", help="HOST:PORT (default: $OTEL_EXPORTER_OTLP_ENDPOINT, "
                   "else 127.0.0.1:4317)")
    s.add_argument("--header", action="append", default=[], metavar="KEY=VALUE",
                   help="request metadata, e.g. 'authorization=Bearer TOKEN' (repeatable; "
                   "default: $OTEL_EXPORTER_OTLP_HEADERS)")
    s.add_argument("--tls", action="store_true", help="use TLS (system roots)")
    s.add_argument("--tls-ca", type=Path, help="use TLS, trusting this CA (PEM)")
    s.add_argument("--gzip", action="store_true", help="compress requests")
    _add_format(s)

    s = sub.add_parser("token", help="make a bearer token for a tenant",
                       description="Print a new random token (give it to the service) and the "
                       "[auth] line for aitrail.toml (only its SHA-256 is stored).")
    s.add_argument("action", choices=("new",))
    s.add_argument("--tenant", required=True)

    s = sub.add_parser("tui", help="the responder's terminal UI",
                       description="Search, trace waterfall, AI call view, replay of a change, "
                       "pivots, SQL console (;), incident pins and notes, access log. Press ? "
                       "for the keys of each screen. Opening an AI call or a replay is "
                       "recorded in the store's access log.")
    s.add_argument("--incident", metavar="NAME", help="incident that pins and notes go to "
                   "(default: asked the first time)")
    # `aitrail tui --store DIR` reads naturally; SUPPRESS keeps a global --store given
    # before the command from being reset by this parser's default.
    s.add_argument("--store", type=Path, default=argparse.SUPPRESS,
                   help="store directory (same as the global --store)")

    s = sub.add_parser("reindex", help="recompute the audit columns of stored data",
                       description="Re-run normalization over every stored file (after an "
                       "upgrade or a [mapping] change). The generic columns are lossless, so "
                       "nothing is lost.")

    s = sub.add_parser(
        "compact", help="merge each closed tenant-hour into one file",
        description="Merge the files of every closed tenant-hour (one that ended more than "
        "--grace seconds ago) into one file sorted by trace id, with its trace index, and swap "
        "it in atomically: readers never see a half-compacted hour. `aitrail serve` does this "
        "on its own every --compact-every seconds; run it by hand after `aitrail ingest`. "
        "Exit code 1 if a partition was skipped (the reason is printed).")
    s.add_argument("--grace", type=float, default=600, metavar="SECONDS",
                   help="an hour is closed this long after it ends (default 600)")
    s.add_argument("--tenant", help="only this tenant's partitions")
    s.add_argument("--dry-run", action="store_true",
                   help="list what would be compacted, change nothing")
    _add_format(s)

    _add_bundle_commands(sub)

    s = sub.add_parser(
        "verify", help="check the store (or a bundle) for tampering and loss",
        description="Read the whole store and check it against its integrity logs and signed "
        "checkpoints (docs/integrity.md): every data file's SHA-256 and row digests, the logs' "
        "hash chains, the checkpoints' Ed25519 signatures, and with --anchor a checkpoint kept "
        "outside the store. Each problem is printed as CLASS OBJECT DETAIL; classes: "
        "modified, deleted, inserted, swapped, renamed, retired_present, rows_mismatch, "
        "replacement_invalid, log_corrupt, log_chain, log_truncated, log_rewritten, "
        "log_missing, rollback, checkpoint_corrupt, checkpoint_signature, checkpoint_key, "
        "checkpoint_origin. Notes (in_flight, publish_interrupted, compaction_interrupted, "
        "torn_tail, retirement_interrupted) are crash leftovers that lose nothing. Files "
        "retired under the retention policy have a tombstone and are counted, not missing. "
        "Exit code 0: verified; 1: problems found; 2: the anchor cannot be read; 3: no store "
        "there. "
        "Given a bundle (a .tar.gz or a directory with manifest.json, from `aitrail export`), "
        "checks it offline instead: no store and no DuckDB needed (docs/bundles.md); exit "
        "code 0: verified, 1: problems, 2: unreadable or bad --key.")
    s.add_argument("target", nargs="?", type=Path, metavar="BUNDLE_OR_STORE",
                   help="a bundle to check offline, or a store directory (default: --store)")
    s.add_argument("--key", metavar="FINGERPRINT_OR_FILE",
                   help="bundles: the public key the bundle must be signed by, as the "
                   "fingerprint `aitrail checkpoint` prints (ed25519:...), the store's "
                   "_keys/signing.pub, or a checkpoint exported from that store. Without it "
                   "a bundle is only checked against the key it names")
    s.add_argument("--anchor", type=Path, metavar="CHECKPOINT",
                   help="a checkpoint saved earlier with `aitrail checkpoint export`: the store "
                   "must still hold everything it signed (detects rollback to an older copy)")
    s.add_argument("--quick", action="store_true",
                   help="check file hashes only, not each file's row digests (faster)")
    _add_format(s)

    s = sub.add_parser(
        "retention", help="retire data past its tenant's retention (spares held data)",
        description="Apply aitrail.toml's [retention] policy (docs/retention.md): every "
        "data file whose rows are all older than their tenant's retention_days, and that no "
        "legal hold touches, is retired: a tombstone (file hash, policy, holds considered) is "
        "logged in the store's integrity log, then the file is deleted, so `aitrail verify` "
        "tells it from a missing file. A file with one held row is kept whole. The policy "
        "in force is recorded in the store; in compliance mode a later policy may only keep "
        "data longer (a shorter one is refused, exit code 2). `aitrail serve` applies it "
        "every [retention] interval seconds. Exit code 0: done; 1: an unreadable file was kept "
        "(named; run `aitrail verify`); 2: no policy, or refused.")
    s.add_argument("action", choices=("apply",), help="apply: retire what is due now")
    s.add_argument("--dry-run", action="store_true",
                   help="list what would be retired and what holds keep; change nothing")
    _add_format(s)

    s = sub.add_parser(
        "hold", help="legal holds: keep data from retention whatever its age",
        description="Place, remove or list legal holds (docs/retention.md). A hold selects "
        "traces by id, by change id, by an incident of the TUI workspace (its pinned traces), "
        "or a service over a time range; a change or incident hold also covers traces added "
        "to it later. Held data stays where it is and searchable; retention keeps every file "
        "holding one held row. Placing and removing are logged in the store's integrity log "
        "(who, when, why) before they take effect.",
        epilog="examples:\n  aitrail hold add --incident 'INC-2291 billing lock' --reason "
        "'postmortem'\n  aitrail hold add --service billing-agent --since 2026-11-01 "
        "--until 2026-11-08 --id lit-7\n  aitrail hold list\n  aitrail hold remove lit-7 "
        "--reason 'matter closed'", formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("action", choices=("add", "remove", "list"))
    s.add_argument("hold_id", nargs="?", metavar="ID", help="remove: the hold to remove")
    s.add_argument("--trace", action="append", metavar="TRACE_ID",
                   help="add: hold this trace (repeatable)")
    s.add_argument("--change", metavar="CHANGE_ID", help="add: hold every trace of a change")
    s.add_argument("--incident", metavar="NAME",
                   help="add: hold the traces pinned to an incident")
    s.add_argument("--service", help="add: hold a service's data (with --since/--until)")
    s.add_argument("--since", type=_parse_time, help="add --service: from (ISO or age)")
    s.add_argument("--until", type=_parse_time, help="add --service: until (ISO or age)")
    s.add_argument("--tenant", help="add: only this tenant's data (default: every tenant)")
    s.add_argument("--id", dest="new_id", metavar="ID",
                   help="add: name the hold (default hold-N), e.g. a matter number")
    s.add_argument("--reason", default="", help="why (recorded with the hold or removal)")
    s.add_argument("--all", action="store_true", help="list: removed holds too")
    _add_format(s)

    s = sub.add_parser(
        "checkpoint", help="sign the integrity logs' heads; export one to anchor elsewhere",
        description="Sign a checkpoint of every integrity log of the store (its size and "
        "RFC 6962 root) with the store's Ed25519 key, and print the key's fingerprint. "
        "`aitrail checkpoint export` signs one and copies it out: keep it where whoever can "
        "write the store cannot (a ticket, another host, WORM storage), and later run "
        "`aitrail verify --anchor FILE`. Collectors sign their own logs every 30 s and on "
        "shutdown.")
    s.add_argument("action", nargs="?", choices=("sign", "export", "adopt"), default="sign",
                   help="sign (default): write <store>/_integrity/checkpoint; export: the same, "
                   "then copy it to --out; adopt: enter every data file no log records (a "
                   "store written before integrity, which verify reports as `inserted`) in "
                   "the `adopt` log, then sign")
    s.add_argument("--dry-run", action="store_true",
                   help="with adopt: list the files it would enter, change nothing")
    s.add_argument("--out", type=Path, metavar="FILE",
                   help="with export: write the checkpoint here (default: standard output)")
    return p


def _rules():
    from .store.finding_rules import RULES

    return RULES


def _store_root(args: argparse.Namespace, config) -> Path:
    from .store.config import default_store

    if args.store:
        return args.store
    if os.environ.get("AITRAIL_STORE"):
        return Path(os.environ["AITRAIL_STORE"])
    if config.store:
        return config.store
    return default_store()


def _progress(enabled: bool):
    """A one-line progress display on a terminal; silent in pipes and CI."""
    if not enabled:
        return None

    def show(msg: str) -> None:
        sys.stderr.write(f"\r\x1b[2K{msg}")
        sys.stderr.flush()

    return show


def cmd_ingest(args, root: Path, config) -> int:
    from .store.ingest import Ingester, default_jobs

    jobs = args.jobs
    if jobs is None:
        size = sum(f.stat().st_size for f in args.files if f.is_file())
        jobs = default_jobs() if size >= 8 * 1024 * 1024 else 1
    if jobs < 1:
        _err("--jobs must be at least 1")
        return EXIT_USAGE
    try:
        ing = Ingester(root, args.tenant, mapping=config.mapping, jobs=jobs,
                       redaction=config.redaction)
    except ValueError as e:
        _err(str(e))
        return EXIT_USAGE
    total = len(args.files)
    show = _progress(sys.stderr.isatty() and total > 1)
    counter = iter(range(1, total + 1))
    report = ing.add_files(
        args.files,
        progress=(lambda f: show(f"ingesting {next(counter)}/{total} {f}")) if show else None)
    if show:
        sys.stderr.write("\r\x1b[2K")
    for line in report.errors + report.rejected:
        _err(line)
    summary = {"spans": report.spans, "requests": report.requests,
               "files_written": len(report.files_written), "errors": len(report.errors),
               "rejected_spans": len(report.rejected), "store": str(root),
               "tenant": args.tenant}
    if args.format == "json":
        print(to_json(summary))
    else:
        print(f"ingested {report.spans} spans from {report.requests} requests into {root} "
              f"(tenant {args.tenant}, {len(report.files_written)} files written)")
        if not report.ok:
            print(f"{len(report.errors)} unreadable inputs, {len(report.rejected)} spans "
                  "rejected (see messages above)")
    return EXIT_OK if report.ok else EXIT_REJECTED


def _open(root: Path):
    from .store.query import Store
    from .store.workspace import attach_views

    store = Store(root)
    attach_views(store)  # the read audit as view `access_log`
    return store


def cmd_sql(args, root: Path, config) -> int:
    from .store.findings import attach_findings

    with _open(root) as st:
        attach_findings(st, config.features)  # views `findings` and `declarations`
        res = st.sql(args.query, limit=args.limit)
    print_rows(res.columns, res.rows, args.format, res.truncated, json_columns=res.json_columns)
    return EXIT_OK


def cmd_traces(args, root: Path, _config) -> int:
    filters = {"service": args.service, "model": args.model, "verdict": args.verdict,
               "reviewer": args.reviewer, "user": args.user, "change": args.change,
               "tenant": args.tenant, "ai_kind": args.ai_kind, "text": args.text,
               "since": args.since, "until": args.until}
    with _open(root) as st:
        res = st.search(limit=args.limit, **filters)
    print_rows(res.columns, res.rows, args.format, res.truncated, json_columns=res.json_columns)
    return EXIT_OK


def _tree_order(rows: list[dict]) -> list[tuple[int, dict]]:
    children: dict[str | None, list[dict]] = {}
    ids = {r["span_id"] for r in rows}
    for r in rows:
        parent = r["parent_span_id"] if r["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(r)
    out: list[tuple[int, dict]] = []

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            out.append((depth, r))
            walk(r["span_id"], depth + 1)

    walk(None, 0)
    return out


def _enforced(decisions: str | None, verdict: str | None) -> str | None:
    """The action enforced under the span's governing verdict, when the span says."""
    if not decisions or not verdict:
        return None
    for d in orjson.loads(decisions):
        if d.get("verdict") == verdict and d.get("action") is not None:
            return f"enforced={d['action']}"
    return None


def cmd_show(args, root: Path, _config) -> int:
    with _open(root) as st:
        if args.format == "otlp-json":
            from .store.otlp_decode import request_to_json
            from .store.otlp_encode import rows_to_request

            req = rows_to_request(st.raw_trace(args.trace_id, args.tenant))
            sys.stdout.write(request_to_json(req).decode() + "\n")
            return EXIT_OK
        res = st.trace(args.trace_id, args.tenant)
    if args.format == "json":
        print(to_json(embed_json(res.rows, res.json_columns)))
        return EXIT_OK
    t0 = min(r["start_time"] for r in res.rows)
    table = []
    for depth, r in _tree_order(res.rows):
        audit = [x for x in (
            r["ai_kind"], r["response_model"] or r["request_model"], r["tool_name"],
            r["policy_verdict"] and f"verdict={r['policy_verdict']}",
            _enforced(r["decisions"], r["policy_verdict"]),
            r["reviewer"] and f"reviewer={r['reviewer']}:{r['review_decision']}",
            r["change_id"]) if x]
        table.append({
            "offset_ms": (r["start_time"] - t0).total_seconds() * 1000,
            "duration_ms": r["duration_ms"], "service": r["service_name"],
            "span": "  " * depth + r["name"], "status": r["status_code"],
            "audit": " ".join(audit), "span_id": r["span_id"]})
    print(f"trace {res.rows[0]['trace_id']}  ({len(res.rows)} spans, tenant "
          f"{res.rows[0]['tenant']})")
    print_rows(list(table[0].keys()), table, "table")
    return EXIT_OK


def cmd_replay(args, root: Path, _config) -> int:
    from .store.replay import build_steps

    with _open(root) as st:
        rows = st.change_spans(args.change_id, args.tenant).rows
    steps = build_steps(rows)
    if args.format == "json":
        print(to_json([s.as_dict() for s in steps]))
        return EXIT_OK
    traces = sorted({r["trace_id"] for r in rows})
    services = sorted({r["service_name"] for r in rows if r["service_name"]})
    print(f"change {args.change_id}: {len(steps)} steps across {len(traces)} traces "
          f"({', '.join(services)})")
    for s in steps:
        gap = f"+{s.gap_s:.1f}s" if s.index > 1 else ""
        print(f"\n{s.index:>3}. {s.time.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]}Z {gap:>9}  "
              f"{s.label:<9} {s.title}  [{s.service or '?'}]")
        for label, value in s.details:
            print(f"       {label:>12}: {value}")
        if s.error:
            print(f"       {'ERROR':>12}: {s.error}")
        print(f"       {'span':>12}: {s.trace_id}/{s.span_id}")
    return EXIT_OK


def cmd_changes(args, root: Path, _config) -> int:
    with _open(root) as st:
        res = st.changes(limit=args.limit)
    cols = ["change_id", "kinds", "first_seen", "services", "verdicts", "reviewers", "errors",
            "spans"] if args.format == "table" else res.columns
    print_rows(cols, res.rows, args.format, res.truncated)
    return EXIT_OK


def cmd_declare(args, root: Path, _config) -> int:
    from .store.declarations import DeclarationError, DeclarationLog, read_declaration

    log = DeclarationLog(root)
    out, errors = [], 0
    for path in args.files:
        try:
            decl, text = read_declaration(path)
        except DeclarationError as e:
            _err(str(e))
            errors += 1
            continue
        if args.check:
            out.append({"file": str(path), "feature": decl.feature, "version": decl.version,
                        "status": "valid"})
            continue
        v, recorded = log.declare(decl, text, str(path), args.effective)
        out.append({"file": str(path), "feature": decl.feature, "version": v.version,
                    "status": "recorded" if recorded else "unchanged",
                    "effective_from": v.effective_from})
    if args.format == "json":
        print(to_json(out))
    else:
        for r in out:
            since = f", in force from {r['effective_from']:%Y-%m-%d %H:%M:%S}Z" \
                if r.get("effective_from") and r["status"] == "recorded" else ""
            print(f"{r['status']:<9} {r['feature']} version {r['version']} ({r['file']}"
                  f"{since})")
        if errors:
            print(f"{errors} file(s) rejected (see messages above); fix them and declare again")
        elif not args.check and out:
            print("next: aitrail findings (spans link to a feature by aitrail.feature or "
                  "[features] in aitrail.toml)")
    return EXIT_REJECTED if errors else EXIT_OK


def cmd_declarations(args, root: Path, config) -> int:
    from .store.findings import attach_findings

    with _open(root) as st:
        attach_findings(st, config.features)
        where, params = ("WHERE feature = ?", [args.feature]) if args.feature else ("", [])
        res = st._fetch(f"SELECT * FROM declarations {where} "
                        "ORDER BY feature, effective_from, declared_at", params)
    cols = ["feature", "version", "declared_at", "effective_from", "declared_by", "file"] \
        if args.format == "table" else res.columns
    print_rows(cols, res.rows, args.format)
    return EXIT_OK


def cmd_findings(args, root: Path, config) -> int:
    from .store.findings import attach_findings, findings

    with _open(root) as st:
        if not attach_findings(st, config.features, args.at):
            _err(f"no declarations recorded in {root}; write an ai_change.yaml "
                 "(docs/declarations.md) and run `aitrail declare FILE`")
        res = findings(st, since=args.since, until=args.until, feature=args.feature,
                       rule=args.rule, limit=args.limit)
    if args.format == "json":
        print_rows(res.columns, res.rows, "json", res.truncated)
        return EXIT_OK
    # One block per finding: the explanation is what a person acts on, so it is never cut.
    for r in res.rows:
        more = f" (+{r['evidence_count'] - 1} more spans)" if r["evidence_count"] > 1 else ""
        print(f"{r['severity'].upper():<6} {r['rule']:<29} {r['feature']}@{r['version']}"
              f"{'' if r['in_force'] else '*'}  {r['time']:%Y-%m-%d %H:%M:%S}Z")
        print(f"       {r['explanation']}")
        print(f"       span {r['trace_id']}/{r['span_id']}{more}"
              + (f"  change {r['change_id']}" if r["change_id"] else ""))
    n = len(res.rows)
    if not n and not config.features:
        _err("note: a span is judged only if it carries aitrail.feature or its service is "
             "mapped in [features] of aitrail.toml (--config)")
    print(f"({n} finding{'s' if n != 1 else ''}"
          + (", truncated: more match; raise --limit)" if res.truncated else ")"))
    if any(not r["in_force"] for r in res.rows):
        print("* declared after the span happened: judged by the feature's first version")
    return EXIT_OK


def cmd_reindex(args, root: Path, config) -> int:
    from .store.normalize import Normalizer
    from .store.reindex import reindex_store

    show = _progress(sys.stderr.isatty())
    files, spans = reindex_store(
        root, Normalizer(config.mapping),
        progress=(lambda i, n: show(f"reindexing {i}/{n} files")) if show else None)
    if show:
        sys.stderr.write("\r\x1b[2K")
    print(f"reindexed {spans} spans in {files} files under {root}")
    return EXIT_OK


def cmd_compact(args, root: Path, config) -> int:
    from .store.compact import compact_store

    show = _progress(sys.stderr.isatty())
    report = compact_store(
        root, grace_s=args.grace, tenant=args.tenant, dry_run=args.dry_run,
        progress=(lambda i, n: show(f"compacting {i}/{n} tenant-hours")) if show else None)
    if show:
        sys.stderr.write("\r\x1b[2K")
    if args.format == "json":
        print(orjson.dumps({**report.to_dict(), "dry_run": args.dry_run}).decode())
    else:
        verb = "would compact" if args.dry_run else "compacted"
        print(f"{verb} {report.partitions} tenant-hours: {report.files_in} files "
              f"({report.bytes_in / 2**20:.1f} MiB)"
              + ("" if args.dry_run else f" -> {report.files_out} files "
                 f"({report.bytes_out / 2**20:.1f} MiB), {report.spans} spans"
                 + (f", {report.log_records} log records" if report.log_records else "")))
    for line in report.skipped:
        _err(f"skipped {line}")
    return EXIT_REJECTED if report.skipped else EXIT_OK


def cmd_verify(args, root: Path, _config) -> int:
    if args.target is not None:
        from .store.bundle.archive import is_bundle

        if is_bundle(args.target):
            return cmd_verify_bundle(args)
        root = args.target
    if args.key is not None:
        _err("--key applies to bundles; a store is checked against its own key")
        return EXIT_USAGE
    from .store.integrity.verify import verify_store

    anchor = None
    if args.anchor is not None:
        try:
            anchor = args.anchor.read_bytes()
        except OSError as e:
            _err(f"cannot read the anchor {args.anchor}: {e.strerror or e}")
            return EXIT_USAGE
    show = _progress(sys.stderr.isatty())
    progress = None
    if show:
        def progress(i: int, n: int, done: int, total: int) -> None:
            if i == n or i % 16 == 0:
                show(f"verifying {i}/{n} files ({done / 2**30:.2f}/{total / 2**30:.2f} GiB)")
    report = verify_store(root, anchor, check_rows=not args.quick, progress=progress)
    if show:
        sys.stderr.write("\r\x1b[2K")
    if args.format == "json":
        print(to_json(report.to_dict()))
    else:
        for f in report.problems:
            print(f"PROBLEM {f.cls:<20} {f.obj}  {f.detail}")
        for f in report.notes:
            print(f"note    {f.cls:<20} {f.obj}  {f.detail}")
        verdict = "OK" if report.ok else f"FAILED: {len(report.problems)} problem(s)"
        print(f"{verdict}: {report.files} files ({report.bytes / 2**20:.1f} MiB, "
              f"{report.rows} rows{'' if report.rows_checked else ', hashes only'}), "
              f"{report.logs} logs ({report.entries} entries), {report.checkpoints} "
              f"checkpoints{' and the anchor' if anchor is not None else ''}, "
              f"in {report.seconds:.1f} s")
        if report.retired:
            print(f"{report.retired} files retired under the retention policy "
                  "(tombstones logged; not missing)")
        print(f"store key: {report.fingerprint or 'none'}")
    return EXIT_OK if report.ok else EXIT_REJECTED


# -- bundles (docs/bundles.md) ----------------------------------------------------------------

BUNDLE_EPILOG = """\
A bundle holds: spans.parquet (the stored rows), logs.parquet (their log records, if any),
traces.otlp.jsonl (OTLP/JSON lines, as the OpenTelemetry Collector's file exporter writes
them: open it in any OTLP tool or `aitrail ingest` it), logs.otlp.jsonl (the log records
likewise), timeline.md (the narrative for the postmortem), checkpoint (the store's signed
integrity checkpoint), manifest.json (every file's SHA-256, every row's digest and inclusion
proof, the legal holds over these traces) and manifest.sig.

Examples:
  aitrail export --change chg-billing-migration-4821 -o chg-4821.tar.gz
  aitrail export --incident "INC-311 invoices locked" -o inc-311.tar.gz
  aitrail export --trace 9fdcbd1e1b8de4148708ee9a67882717 --dir -o trace-9fdc/
  aitrail export --where "policy_verdict = 'deny'" --tenant acme -o deny.tar.gz
  aitrail verify chg-4821.tar.gz --key ed25519:3a1f...   # on any machine, offline
  aitrail --store other-store import chg-4821.tar.gz
"""


def _add_bundle_commands(sub) -> None:
    s = sub.add_parser(
        "export", help="write a verifiable bundle of traces for a postmortem",
        description="Export whole traces, chosen by id, by change, by incident (its pinned "
        "traces) or by a SQL condition on the spans view, as one self-contained bundle that "
        "anyone can check offline with `aitrail verify BUNDLE` and load into another store "
        "with `aitrail import`. Each span carries an inclusion proof against a checkpoint "
        "signed by the store's key (a fresh one is signed if the last does not cover it). "
        "The export is recorded in the store's access log. Exit code 3: nothing matched.",
        epilog=BUNDLE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = s.add_mutually_exclusive_group(required=True)
    which.add_argument("--trace", nargs="+", metavar="ID", help="trace ids (32 hex digits)")
    which.add_argument("--change", metavar="ID", help="every trace that touched this change")
    which.add_argument("--incident", metavar="NAME", help="every trace pinned to this incident "
                       "(pins are made in the TUI); its notes go into timeline.md")
    which.add_argument("--where", metavar="SQL", help="every trace with a span matching this "
                       "condition on the spans view (docs/schema.md), e.g. \"reviewer = "
                       "'dana@acme.example'\"")
    s.add_argument("--tenant", help="only traces of this tenant")
    s.add_argument("-o", "--out", type=Path, required=True, metavar="FILE",
                   help="the bundle to write: FILE.tar.gz, or a directory with --dir")
    s.add_argument("--dir", action="store_true", help="write a directory, not a .tar.gz")
    _add_format(s)

    s = sub.add_parser(
        "import", help="load a bundle into this store, keeping its provenance",
        description="Verify a bundle (as `aitrail verify BUNDLE`; a bundle with problems is "
        "refused) and add its stored rows to this store as they are, redactions included "
        "(they are not re-ingested, so nothing is redacted twice or lost). The new files are "
        "published through the store's integrity log (log `import`) and carry the bundle's "
        "manifest hash, origin and checkpoint in their metadata; "
        "<store>/_workspace/imports.jsonl lists every import. Rows the store already holds are "
        "skipped: importing twice adds nothing. Exit code 1: the bundle failed verification; "
        "2: unreadable or bad --key.",
        epilog=BUNDLE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("bundle", type=Path, metavar="BUNDLE")
    s.add_argument("--key", metavar="FINGERPRINT_OR_FILE",
                   help="refuse the bundle unless signed by this key (as for verify)")
    _add_format(s)


def _bundle_progress():
    show = _progress(sys.stderr.isatty())
    if not show:
        return None, None

    def progress(stage: str, done: int, total: int) -> None:
        bar = "#" * (20 * done // total) if total else ""
        show(f"{stage} [{bar:<20}] {done}/{total}" if total > 1 else stage)

    return progress, show


def cmd_export(args, root: Path, _config) -> int:
    from .store.bundle.export import Selection, export
    from .store.workspace import Workspace

    if args.trace:
        sel = Selection("trace", args.trace, args.tenant)
    elif args.change:
        sel = Selection("change", [args.change], args.tenant)
    elif args.incident:
        sel = Selection("incident", [args.incident], args.tenant)
    else:
        sel = Selection("where", [args.where], args.tenant)
    progress, show = _bundle_progress()
    with _open(root) as st:
        try:
            report = export(st, Workspace(root), sel, args.out, as_dir=args.dir,
                            progress=progress)
        finally:
            if show:
                sys.stderr.write("\r\x1b[2K")
    summary = {"bundle": str(report.path), "spans": report.spans,
               "log_records": report.log_records, "traces": report.traces,
               "files": report.files, "key_fingerprint": report.fingerprint,
               "fresh_checkpoint": report.fresh_checkpoint}
    if args.format == "json":
        print(to_json(summary))
    else:
        print(f"exported {report.spans} spans"
              + (f" and {report.log_records} log records" if report.log_records else "")
              + f" of {report.traces} traces to {report.path}"
              + (" (signed a fresh checkpoint)" if report.fresh_checkpoint else ""))
        print(f"store key: {report.fingerprint}")
        print(f"check it anywhere: aitrail verify {report.path} --key {report.fingerprint}")
    return EXIT_OK


def _pinned(value: str | None) -> str | None:
    from .store.bundle.verify import pinned_fingerprint

    return None if value is None else pinned_fingerprint(value)


def cmd_verify_bundle(args) -> int:
    """Offline: imports nothing that needs a store (no DuckDB)."""
    from .store.bundle.archive import Unreadable
    from .store.bundle.verify import verify_bundle

    try:
        report = verify_bundle(args.target, _pinned(args.key))
    except (Unreadable, ValueError, OSError) as e:
        _err(str(e))
        return EXIT_USAGE
    if args.format == "json":
        print(to_json(report.to_dict()))
        return EXIT_OK if report.ok else EXIT_REJECTED
    for p in report.problems:
        print(f"PROBLEM {p.cls:<20} {p.obj}  {p.detail}")
    verdict = "OK" if report.ok else f"FAILED: {len(report.problems)} problem(s)"
    print(f"{verdict}: {report.spans} spans of {report.traces} traces"
          + (f", {report.logs} log records" if report.logs else "")
          + f", exported by {report.exported_by} at {report.exported_at}, "
          f"checkpoint of {report.origin} at {report.checkpoint_time}, in "
          f"{report.seconds:.2f} s")
    for h in report.holds:
        print(f"legal hold {h['id']} by {h['user']}" + (f" ({h['reason']})" if h['reason']
                                                        else "")
              + (f", removed by {h['released']['user']}" if h["released"] else ", active"
                 " when exported"))
    if report.policy:
        print(f"retention policy when exported: {report.policy['mode']}, "
              f"{report.policy['retention_days'] or 'forever'} days by default")
    print(f"signed by: {report.fingerprint}"
          + ("" if report.pinned else "  (not pinned: compare it with the fingerprint "
             "`aitrail checkpoint` prints on the store, or pass --key)"))
    return EXIT_OK if report.ok else EXIT_REJECTED


def cmd_import(args, root: Path, _config) -> int:
    from .store.bundle.archive import Unreadable
    from .store.bundle.import_ import BundleRejected, import_bundle

    try:
        report = import_bundle(root, args.bundle, _pinned(args.key))
    except (Unreadable, ValueError, OSError) as e:
        _err(str(e))
        return EXIT_USAGE
    except BundleRejected as e:
        for p in e.report.problems:
            _err(f"PROBLEM {p.cls} {p.obj}  {p.detail}")
        _err(f"{args.bundle}: failed verification; nothing imported")
        return EXIT_REJECTED
    if args.format == "json":
        print(to_json(report.to_dict()))
    else:
        print(f"imported {report.spans} spans"
              + (f" and {report.log_records} log records" if report.log_records else "")
              + f" from {args.bundle} into {root} ({report.skipped} already there, "
              f"{len(report.files)} files written, log import)")
        print(f"provenance: bundle {report.bundle_sha256[:16]}..., origin {report.origin}, "
              f"signed by {report.fingerprint}")
    return EXIT_OK


def cmd_retention(args, root: Path, config) -> int:
    from .store.retention.apply import apply_retention
    from .store.retention.policy import RetentionRefused

    if config.retention is None:
        _err("no retention policy: add a [retention] section to aitrail.toml "
             "(docs/retention.md); without one, data is kept forever")
        return EXIT_USAGE
    show = _progress(sys.stderr.isatty())
    try:
        report = apply_retention(
            root, config.retention, dry_run=args.dry_run,
            progress=(lambda i, n: show(f"retention: {i}/{n} files checked")) if show else None)
    except RetentionRefused as e:
        _err(str(e))
        return EXIT_USAGE
    finally:
        if show:
            sys.stderr.write("\r\x1b[2K")
    if args.format == "json":
        print(to_json(report.to_dict()))
        return EXIT_REJECTED if report.skipped else EXIT_OK
    verb = "would retire" if args.dry_run else "retired"
    for v in report.retired:
        print(f"{verb} {v.path}  ({v.rows} rows, newest {v.newest})")
    for v in report.held:
        print(f"kept    {v.path}  held by {', '.join(v.holds)}")
    for line in report.skipped:
        _err(f"skipped {line}")
    d = report.to_dict()
    print(f"{verb} {len(report.retired)} files ({d['retired_rows']} rows, "
          f"{d['retired_bytes'] / 2**20:.1f} MiB); {len(report.held)} past retention kept by "
          f"{len(report.active_holds)} active hold(s); policy: {report.policy}"
          + (" (newly recorded)" if report.policy_recorded and not args.dry_run else "")
          + (f"; finished {report.completed} interrupted retirement(s)"
             if report.completed else ""))
    return EXIT_REJECTED if report.skipped else EXIT_OK


def cmd_hold(args, root: Path, _config) -> int:
    from .store.errors import NotFound
    from .store.retention.holds import add_hold, read_holds, remove_hold
    from .store.workspace import current_user

    if not root.is_dir():
        raise NotFound(f"no store at {root}")
    if args.action == "list":
        holds = [h for h in read_holds(root) if args.all or h.active]
        rows = [{"id": h.id, "active": h.active, "selects": h.describe(),
                 "traces": len(h.trace_ids), "placed": h.to_dict()["placed"], "by": h.user,
                 "reason": h.reason} for h in holds]
        if args.format == "json":
            print(to_json([h.to_dict() for h in holds]))
        else:
            print_rows(["id", "active", "selects", "traces", "placed", "by", "reason"],
                       rows, "table")
        return EXIT_OK
    if args.action == "remove":
        if not args.hold_id:
            _err("hold remove needs the hold's ID (`aitrail hold list` shows them)")
            return EXIT_USAGE
        hold = remove_hold(root, args.hold_id, args.reason, current_user())
        print(to_json(hold.to_dict()) if args.format == "json" else
              f"removed hold {hold.id} ({hold.describe()}); its data is subject to retention "
              "again")
        return EXIT_OK
    if args.hold_id:
        _err("hold add takes no positional ID; name the hold with --id")
        return EXIT_USAGE
    hold = add_hold(root, traces=args.trace, change=args.change, incident=args.incident,
                    service=args.service, since=args.since, until=args.until,
                    tenant=args.tenant, reason=args.reason, hold_id=args.new_id,
                    user=current_user())
    print(to_json(hold.to_dict()) if args.format == "json" else
          f"placed hold {hold.id}: {hold.describe()}, {len(hold.trace_ids)} trace(s) now")
    return EXIT_OK


def cmd_checkpoint(args, root: Path, _config) -> int:
    from .store.errors import NotFound
    from .store.integrity.log import store_checkpoint

    if not root.is_dir():
        raise NotFound(f"no store at {root}")
    if args.action == "adopt":
        from .store.integrity.publish import adopt_unlogged

        paths = adopt_unlogged(root, dry_run=args.dry_run)
        for p in paths:
            print(f"{'would adopt' if args.dry_run else 'adopted'} {p}")
        print(f"{len(paths)} unlogged file(s) {'to adopt' if args.dry_run else 'adopted'}")
        if args.dry_run or not paths:
            return EXIT_OK
    path, cp = store_checkpoint(root)
    if args.action == "export":
        if args.out is None:
            sys.stdout.write(cp.encode().decode())
        else:
            args.out.write_bytes(cp.encode())
            print(f"exported to {args.out}")
    else:
        print(f"signed {path}")
    for name, (size, head) in sorted(cp.logs.items()):
        (sys.stderr if args.out is None and args.action == "export" else sys.stdout).write(
            f"  log {name}: {size} entries, root {head.hex()}\n")
    (sys.stderr if args.out is None and args.action == "export" else sys.stdout).write(
        f"store key: {cp.fingerprint}\n")
    return EXIT_OK


def cmd_serve(args, root: Path, config) -> int:
    from .collector.auth import Authenticator
    from .collector.options import ServeError, ServeOptions, default_workers

    def addr(value: str) -> str | None:
        return None if value.lower() in ("off", "none", "") else value

    opts = ServeOptions(
        store=root, grpc_address=addr(args.grpc), http_address=addr(args.http),
        writer_id=args.writer_id, insecure=args.insecure, tls_cert=args.tls_cert,
        tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
        max_request_bytes=args.max_request_bytes, mapping=config.mapping,
        workers=args.workers if args.workers is not None else default_workers(),
        compact_every=args.compact_every, redaction=config.redaction,
        retention=config.retention)
    try:
        auth = Authenticator.from_config(config.doc, str(config.path))
        if opts.workers > 1:
            from .collector.supervisor import run_supervised

            return run_supervised(opts, auth)
        from .collector.serve import run

        return run(opts, auth)
    except (ServeError, ValueError) as e:
        _err(str(e))
        return EXIT_USAGE
    except OSError as e:
        _err(f"cannot start: {e}")
        return EXIT_USAGE


def cmd_send(args, _root: Path, _config) -> int:
    from .collector.send import Sender, parse_headers

    endpoint = args.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or \
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "127.0.0.1:4317"
    use_tls = args.tls or endpoint.startswith("https://")
    endpoint = endpoint.removeprefix("http://").removeprefix("https://").rstrip("/")
    try:
        headers = parse_headers(args.header or [os.environ.get("OTEL_EXPORTER_OTLP_HEADERS",
                                                               "")])
    except ValueError as e:
        _err(str(e))
        return EXIT_USAGE
    gzip = args.gzip or os.environ.get("OTEL_EXPORTER_OTLP_COMPRESSION", "") == "gzip"
    sender = Sender(endpoint, headers, tls_ca=args.tls_ca, use_tls=use_tls, gzip=gzip)
    show = _progress(sys.stderr.isatty() and len(args.files) > 1)
    try:
        report = sender.send_files(
            args.files, progress=(lambda i, n, f: show(f"sending {i}/{n} {f}")) if show
            else None)
    finally:
        sender.close()
    if show:
        sys.stderr.write("\r\x1b[2K")
    for line in report.errors:
        _err(line)
    for line in report.warnings:
        _err(f"warning: {line}")
    summary = {"endpoint": endpoint, "requests": report.requests, "spans": report.spans,
               "rejected_spans": report.rejected_spans, "errors": len(report.errors)}
    if args.format == "json":
        print(to_json(summary))
    else:
        print(f"sent {report.spans} spans in {report.requests} requests to {endpoint}"
              + (f"; {report.rejected_spans} spans rejected" if report.rejected_spans else "")
              + (f"; {len(report.errors)} failures" if report.errors else ""))
    return EXIT_OK if report.ok else EXIT_REJECTED


def cmd_token(args, _root: Path, _config) -> int:
    from .collector.auth import hash_token, new_token
    from .store.config import check_tenant

    try:
        tenant = check_tenant(args.tenant)
    except ValueError as e:
        _err(str(e))
        return EXIT_USAGE
    token = new_token()
    print(f"token (give this to the service; it is not stored anywhere): {token}")
    print("add to aitrail.toml under [auth] tokens = [ ... ]:")
    print(f'  {{ sha256 = "{hash_token(token)}", tenant = "{tenant}" }},')
    print("exporters send it as: OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20" + token)
    return EXIT_OK


def cmd_tui(args, root: Path, config) -> int:
    from .tui.app import make_app

    if not sys.stdout.isatty():
        _err("tui needs a terminal")
        return EXIT_USAGE
    make_app(root, incident=args.incident, features=config.features).run()
    return EXIT_OK


COMMANDS = {"serve": cmd_serve, "send": cmd_send, "token": cmd_token, "ingest": cmd_ingest,
            "sql": cmd_sql, "traces": cmd_traces, "show": cmd_show, "replay": cmd_replay,
            "changes": cmd_changes, "reindex": cmd_reindex, "compact": cmd_compact,
            "verify": cmd_verify, "checkpoint": cmd_checkpoint, "tui": cmd_tui,
            "export": cmd_export, "import": cmd_import,
            "retention": cmd_retention, "hold": cmd_hold,
            "declare": cmd_declare, "declarations": cmd_declarations,
            "findings": cmd_findings}


def main(argv: list[str] | None = None) -> int:
    from .store.config import default_config_path, load_config
    from .store.errors import BadInput, ConfigError, NotFound, QueryError, StoreError

    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config or default_config_path())
        root = _store_root(args, config)
        return COMMANDS[args.command](args, root, config)
    except ConfigError as e:
        _err(str(e))
        return EXIT_USAGE
    except BadInput as e:
        _err(str(e))
        return EXIT_USAGE
    except NotFound as e:
        _err(str(e))
        return EXIT_NOT_FOUND
    except QueryError as e:
        _err(f"query failed: {e}")
        return EXIT_QUERY
    except StoreError as e:
        _err(str(e))
        return EXIT_QUERY
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
