"""`aitrail verify BUNDLE`: check a bundle offline, from its own files and an optional
pinned key. No store, no DuckDB (tests run it with duckdb blocked): pyarrow reads the
Parquet, cryptography checks Ed25519, the rest is hashing.

What is checked, and what each check stops (docs/bundles.md):
1. The checkpoint's Ed25519 signature (a changed log head, size or key line).
2. The key: the manifest names the checkpoint's key; with `--key`, it is the pinned one
   (a bundle re-signed by anyone else's key).
3. The manifest's signature by that key (any edited field: selection, who, when, hashes).
4. Every file's SHA-256 and size against the manifest; none missing, none extra.
5. Each source file's log entry is leaf `index` of its log in the checkpoint
   (RFC 6962 inclusion proof, merkle.verify_inclusion: strict about lengths and ranges).
6. Each row hashes (rows.py) to its recorded digest, which is leaf `index` of its source
   file's row root (an inclusion proof against `rows_root` in that log entry), and its
   tenant is the one in the entry's path.
7. The OTLP/JSON lines are exactly what the rows encode to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..integrity import keys, merkle
from ..integrity import rows as row_mod
from .archive import read_bundle
from .layout import (
    CHECKPOINT,
    DATASETS,
    FORMAT,
    LOGS,
    LOGS_JSONL,
    MANIFEST,
    SIGNATURE,
    SPANS,
    TENANT_COLUMN,
    TRACES_JSONL,
    signed_message,
)
from .otlp import log_lines, trace_lines

PROBLEMS = {
    "manifest_corrupt": "manifest.json is missing or not a bundle manifest",
    "manifest_signature": "the manifest's signature does not verify with the checkpoint's key",
    "checkpoint_corrupt": "the checkpoint cannot be read",
    "checkpoint_signature": "the checkpoint's signature does not verify",
    "key_mismatch": "signed by another key than the manifest names, or than --key pins",
    "file_missing": "a file the manifest lists is not in the bundle",
    "file_extra": "a file in the bundle the manifest does not list",
    "file_modified": "a file's SHA-256 or size differs from the manifest",
    "entry_invalid": "a source file's log entry cannot be read or is not an add/replace",
    "entry_proof": "a log entry is not in its log as the checkpoint signed it",
    "rows_invalid": "a Parquet file cannot be read, or its columns differ from the manifest",
    "row_digest": "a row does not hash to its recorded digest (a changed span)",
    "row_proof": "a row digest is not in its source file's row root",
    "row_tenant": "a row's tenant is not the one of the file that proves it",
    "otlp_mismatch": "the OTLP/JSON lines are not what the rows encode to",
    "retention_invalid": "a retention policy or legal hold entry that cannot be read or is "
                         "not in the retention log as the checkpoint signed it",
}
RETENTION_LOG = "retention"  # holds.py (not imported: it needs pyarrow compute and more)


@dataclass
class Problem:
    cls: str
    obj: str
    detail: str

    def to_dict(self) -> dict:
        return {"class": self.cls, "object": self.obj, "detail": self.detail}


@dataclass
class BundleReport:
    problems: list[Problem] = field(default_factory=list)
    spans: int = 0
    logs: int = 0
    traces: int = 0
    fingerprint: str | None = None
    pinned: bool = False
    origin: str | None = None
    checkpoint_time: str | None = None
    exported_by: str | None = None
    exported_at: str | None = None
    selection: dict | None = None
    holds: list[dict] = field(default_factory=list)  # legal holds over these traces
    policy: dict | None = None  # the retention policy recorded when exported
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, cls: str, obj: str, detail: str) -> None:
        assert cls in PROBLEMS, cls
        self.problems.append(Problem(cls, obj, detail))

    def classes(self) -> set[str]:
        return {p.cls for p in self.problems}

    def to_dict(self) -> dict:
        return {"ok": self.ok, "problems": [p.to_dict() for p in self.problems],
                "spans": self.spans, "log_records": self.logs, "traces": self.traces,
                "key_fingerprint": self.fingerprint, "key_pinned": self.pinned,
                "origin": self.origin, "checkpoint_time": self.checkpoint_time,
                "exported_by": self.exported_by, "exported_at": self.exported_at,
                "selection": self.selection, "holds": self.holds,
                "retention_policy": self.policy, "seconds": round(self.seconds, 3)}


def pinned_fingerprint(value: str) -> str:
    """--key: a fingerprint (ed25519:<hex>), or a file holding the public key (raw 32 bytes
    as in <store>/_keys/signing.pub, or its base64), or a checkpoint signed by it."""
    v = value.strip()
    if v.startswith("ed25519:"):
        if len(v) != 72 or any(c not in "0123456789abcdef" for c in v[8:]):
            raise ValueError(f"{value!r} is not a key fingerprint (ed25519: and 64 hex digits)")
        return v
    data = Path(v).read_bytes()
    if len(data) == 32:
        return keys.fingerprint(data)
    try:
        raw = base64.b64decode(data.strip(), validate=True)
        if len(raw) == 32:
            return keys.fingerprint(raw)
    except binascii.Error:
        pass
    try:
        return keys.parse_checkpoint(data).fingerprint
    except keys.BadCheckpoint:
        raise ValueError(f"{value}: neither a public key nor a checkpoint") from None


def verify_bundle(path: Path, pinned: str | None = None) -> BundleReport:
    """Check the bundle at `path`; Unreadable if it cannot be opened at all."""
    return verify_files(read_bundle(path), pinned)


def _load_manifest(data: bytes | None, report: BundleReport) -> dict | None:
    try:
        m = orjson.loads(data) if data is not None else None
    except orjson.JSONDecodeError:
        m = None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not all(
            isinstance(m.get(k), t) for k, t in (("files", dict), ("sources", list),
                                                  ("rows", dict), ("columns", dict))):
        report.add("manifest_corrupt", MANIFEST, "missing, not JSON, or not " + FORMAT)
        return None
    return m


def _check_signature(files: dict[str, bytes], cp: keys.Checkpoint,
                     report: BundleReport) -> None:
    line = files.get(SIGNATURE, b"").decode(errors="replace").rstrip("\n").split(" ")
    try:
        if len(line) != 3 or line[0] != "signature" or line[1] != cp.fingerprint:
            raise ValueError("not a signature line by the checkpoint's key")
        sig = base64.b64decode(line[2], validate=True)
        Ed25519PublicKey.from_public_bytes(cp.public).verify(
            sig, signed_message(files[MANIFEST]))
    except (ValueError, binascii.Error, InvalidSignature) as e:
        report.add("manifest_signature", SIGNATURE, str(e) or "the signature does not verify")


def _check_files(files: dict[str, bytes], listed: dict, report: BundleReport) -> None:
    for name in sorted(set(files) - {MANIFEST, SIGNATURE}):
        want = listed.get(name)
        if not isinstance(want, dict):
            report.add("file_extra", name, "not listed in the manifest")
            continue
        sha = hashlib.sha256(files[name]).hexdigest()
        if sha != want.get("sha256") or len(files[name]) != want.get("size"):
            report.add("file_modified", name, f"sha256 {sha[:16]}..., manifest "
                       f"{str(want.get('sha256'))[:16]}...")
    for name in sorted(set(listed) - set(files)):
        report.add("file_missing", name, "listed in the manifest, not in the bundle")


def _check_sources(manifest: dict, cp: keys.Checkpoint, report: BundleReport
                   ) -> list[dict | None]:
    """Each source's entry (None where it does not prove out)."""
    out: list[dict | None] = []
    for n, s in enumerate(manifest["sources"]):
        where = f"source {n}"
        try:
            line = s["entry"].encode()
            entry = orjson.loads(line)
            index, log = s["index"], s["log"]
            proof = [bytes.fromhex(h) for h in s["proof"]]
            if entry.get("kind") not in ("add", "replace") or entry.get("rows_digest") != \
                    row_mod.VERSION or not isinstance(entry.get("path"), str) or \
                    not isinstance(entry.get("rows"), int) or not isinstance(index, int) or \
                    s.get("path") != entry["path"]:
                raise ValueError("not an add/replace entry with v1 row digests")
            entry["_root"] = bytes.fromhex(entry["rows_root"])
        except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as e:
            report.add("entry_invalid", where, str(e))
            out.append(None)
            continue
        where = f"{where} ({log} entry {index + 1}: {entry['path']})"
        size, root = cp.logs.get(log, (0, b""))
        if not merkle.verify_inclusion(merkle.leaf_hash(line), index, size, proof, root):
            report.add("entry_proof", where, f"not leaf {index} of log {log!r} as the "
                       f"checkpoint signed it ({size} entries)")
            out.append(None)
            continue
        out.append(entry)
    return out


def _check_retention(manifest: dict, cp: keys.Checkpoint, report: BundleReport) -> None:
    """Each retention entry must be a leaf of the retention log the checkpoint signed."""
    events = manifest.get("retention", [])
    if not isinstance(events, list):
        report.add("retention_invalid", MANIFEST, "`retention` is not a list")
        return
    holds: dict[str, dict] = {}
    for n, ev in enumerate(events):
        where = f"retention entry {n}"
        try:
            line = ev["entry"].encode()
            e = orjson.loads(line)
            index, proof = ev["index"], [bytes.fromhex(h) for h in ev["proof"]]
            if ev.get("log") != RETENTION_LOG or not isinstance(index, int) or \
                    e.get("kind") not in ("policy", "hold", "release"):
                raise ValueError("not a policy, hold or release entry of the retention log")
        except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError) as x:
            report.add("retention_invalid", where, str(x))
            continue
        size, root = cp.logs.get(RETENTION_LOG, (0, b""))
        if not merkle.verify_inclusion(merkle.leaf_hash(line), index, size, proof, root):
            report.add("retention_invalid", where, f"not leaf {index} of the retention log "
                       f"as the checkpoint signed it ({size} entries)")
            continue
        if e["kind"] == "policy":
            report.policy = {k: e.get(k) for k in ("mode", "retention_days", "tenants")}
        elif e["kind"] == "hold":
            holds[e.get("hold")] = {"id": e.get("hold"), "select": e.get("select"),
                                    "reason": e.get("reason"), "user": e.get("user"),
                                    "time": e.get("time"), "released": None}
        elif e.get("hold") in holds:
            holds[e["hold"]]["released"] = {"user": e.get("user"),
                                            "reason": e.get("reason"), "time": e.get("time")}
    report.holds = list(holds.values())


def _check_rows(ds: str, data: bytes, records: list, columns: list,
                sources: list[dict | None], report: BundleReport) -> pa.Table | None:
    name = DATASETS[ds]
    try:
        table = pq.read_table(pa.BufferReader(data))
        table.validate(full=True)  # rows.py: strings must be valid UTF-8
    except (pa.ArrowException, OSError, ValueError) as e:
        report.add("rows_invalid", name, f"cannot read: {e}")
        return None
    have = [[f.name, str(f.type)] for f in table.schema]
    if have != columns:
        report.add("rows_invalid", name, "its columns differ from the manifest's")
        return None
    if table.num_rows != len(records):
        report.add("rows_invalid", name, f"{table.num_rows} rows, the manifest proves "
                   f"{len(records)}")
        return None
    digests = row_mod.row_digests(table.drop_columns([TENANT_COLUMN]))
    tenants = table.column(TENANT_COLUMN).to_pylist()
    ids = (table.column("trace_id").to_pylist(), table.column("span_id").to_pylist())
    for i, (rec, digest) in enumerate(zip(records, digests, strict=True)):
        where = f"{name} row {i}"
        try:
            src = sources[rec["source"]] if rec["source"] >= 0 else None
            want = bytes.fromhex(rec["digest"])
            proof = [bytes.fromhex(h) for h in rec["proof"]]
            index = rec["index"]
        except (KeyError, TypeError, ValueError, IndexError) as e:
            report.add("row_proof", where, f"unreadable proof record: {e}")
            continue
        tid, sid = (None if v is None else v.hex() for v in (ids[0][i], ids[1][i]))
        where += f" (trace {tid} span {sid})"
        if digest != want or rec.get("trace_id") != tid or rec.get("span_id") != sid:
            report.add("row_digest", where, "its values do not hash to the recorded digest")
            continue
        if src is None:
            report.add("row_proof", where, "its source file is not proven")
            continue
        if not merkle.verify_inclusion(digest, index, src["rows"], proof, src["_root"]):
            report.add("row_proof", where, f"not leaf {index} of the row root of "
                       f"{src['path']}")
            continue
        if not src["path"].startswith(f"{ds}/tenant={tenants[i]}/"):
            report.add("row_tenant", where, f"tenant {tenants[i]!r}, proven by {src['path']}")
    return table


def verify_files(files: dict[str, bytes], pinned: str | None = None) -> BundleReport:
    t0 = time.perf_counter()
    report = BundleReport(pinned=pinned is not None)
    manifest = _load_manifest(files.get(MANIFEST), report)
    try:
        cp = keys.parse_checkpoint(files.get(CHECKPOINT, b""))
    except keys.BadCheckpoint as e:
        report.add("checkpoint_corrupt", CHECKPOINT, str(e))
        cp = None
    if cp is not None:
        report.fingerprint, report.origin, report.checkpoint_time = (
            cp.fingerprint, cp.origin, cp.time)
        if not cp.signature_ok():
            report.add("checkpoint_signature", CHECKPOINT, "the signature does not verify")
        if pinned is not None and cp.fingerprint != pinned:
            report.add("key_mismatch", CHECKPOINT, f"signed by {cp.fingerprint}; --key pins "
                       f"{pinned}")
    if manifest is None or cp is None:
        report.seconds = time.perf_counter() - t0
        return report
    report.exported_by, report.exported_at = manifest.get("exported_by"), manifest.get(
        "exported_at")
    report.selection = manifest.get("selection")
    if manifest.get("origin") != cp.origin or manifest.get("row_digest") != row_mod.VERSION:
        report.add("manifest_corrupt", MANIFEST, f"origin {manifest.get('origin')}, row digests "
                   f"{manifest.get('row_digest')}; the checkpoint is of {cp.origin}, this "
                   f"verifier reads row digests {row_mod.VERSION}")
    if manifest.get("key_fingerprint") != cp.fingerprint:
        report.add("key_mismatch", MANIFEST, f"names {manifest.get('key_fingerprint')}; the "
                   f"checkpoint is signed by {cp.fingerprint}")
    _check_signature(files, cp, report)
    _check_files(files, manifest["files"], report)
    sources = _check_sources(manifest, cp, report)
    _check_retention(manifest, cp, report)
    spans = logs = None
    for ds, name in DATASETS.items():
        records = manifest["rows"].get(ds)
        if records is None and name not in files:
            continue
        if not isinstance(records, list) or name not in files:
            report.add("rows_invalid", name, "the manifest and the bundle disagree on it")
            continue
        table = _check_rows(ds, files[name], records, manifest["columns"].get(ds),
                            sources, report)
        if table is None:
            continue
        if ds == "spans":
            spans = table
            report.spans = table.num_rows
            report.traces = len(set(zip(table.column(TENANT_COLUMN).to_pylist(),
                                        table.column("trace_id").to_pylist(), strict=True)))
        else:
            logs = table
            report.logs = table.num_rows
    for table, encode, jsonl, name in ((spans, trace_lines, TRACES_JSONL, SPANS),
                                       (logs, log_lines, LOGS_JSONL, LOGS)):
        if table is None:
            continue
        try:
            same = encode(table) == files.get(jsonl)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            # Rows changed into something that is not even encodable (reported above too).
            same, why = False, f"the rows of {name} do not encode to OTLP: {e}"
        else:
            why = f"differs from the OTLP/JSON of {name}"
        if not same:
            report.add("otlp_mismatch", jsonl, why)
    report.seconds = time.perf_counter() - t0
    return report
