"""`aitrail import BUNDLE`: a verified bundle's stored rows into this store, as they are.

Rows are taken from the bundle's Parquet, not re-ingested from its OTLP: re-ingesting would
run redaction again on already-masked content and lose the `redactions` records. Each new
file is published the way every writer publishes (writer.write_table: temp file, integrity
log entry in log `import`, rename), so the store still verifies clean, and its Parquet
metadata names the bundle (manifest SHA-256), the exporting store's origin and checkpoint:
provenance that the file hash in the integrity log makes tamper-evident. A row the store
already holds (same row digest, same tenant-hour) is skipped, so importing twice adds nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StoreError
from ..integrity import rows as row_mod
from ..integrity.log import leaf_log
from ..integrity.publish import file_digests
from ..workspace import WORKSPACE_DIR, Workspace, append_line
from ..writer import ParquetWriter
from .archive import read_bundle
from .layout import CHECKPOINT, DATASETS, MANIFEST, TENANT_COLUMN
from .verify import BundleReport, verify_files

IMPORT_LOG = "import"
IMPORTS_FILE = "imports.jsonl"


class BundleRejected(Exception):
    def __init__(self, report: BundleReport) -> None:
        super().__init__(f"bundle failed verification: {len(report.problems)} problem(s)")
        self.report = report


@dataclass
class ImportReport:
    spans: int = 0
    log_records: int = 0
    skipped: int = 0
    files: list[str] = field(default_factory=list)
    bundle_sha256: str = ""
    origin: str | None = None
    fingerprint: str | None = None
    checkpoint_sha256: str = ""

    def to_dict(self) -> dict:
        return {"spans": self.spans, "log_records": self.log_records,
                "skipped": self.skipped, "files": self.files,
                "bundle_sha256": self.bundle_sha256, "origin": self.origin,
                "key_fingerprint": self.fingerprint,
                "checkpoint_sha256": self.checkpoint_sha256}


def _hour_bucket(path: str) -> tuple[str, int]:
    """(tenant, hour bucket) of a stored file's path: the partition the row was in."""
    parts = dict(p.split("=", 1) for p in path.split("/")[1:4])
    d = date.fromisoformat(parts["date"])
    epoch_h = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) // 3600
    return parts["tenant"], epoch_h + int(parts["hour"])


def _held(root: Path, dataset: str, partitions: set[tuple[str, int]]) -> Counter[bytes]:
    """Row digests the store holds in these tenant-hours."""
    have: Counter[bytes] = Counter()
    for tenant, bucket in partitions:
        t = datetime.fromtimestamp(bucket * 3600, tz=UTC)
        part = (root / dataset / f"tenant={tenant}" / f"date={t:%Y-%m-%d}" / f"hour={t:%H}")
        for f in sorted(part.glob("*.parquet")) if part.is_dir() else ():
            if not f.name.startswith("."):
                have.update(file_digests(f))
    return have


def import_bundle(root: Path, path: Path, pinned: str | None = None,
                  user: str | None = None) -> ImportReport:
    """BundleRejected if the bundle does not verify (nothing is written then)."""
    root = Path(root)
    files = read_bundle(path)
    checked = verify_files(files, pinned)
    if not checked.ok:
        raise BundleRejected(checked)
    manifest = orjson.loads(files[MANIFEST])
    report = ImportReport(bundle_sha256=hashlib.sha256(files[MANIFEST]).hexdigest(),
                          origin=checked.origin, fingerprint=checked.fingerprint,
                          checkpoint_sha256=hashlib.sha256(files[CHECKPOINT]).hexdigest())
    provenance = {b"aitrail.import.bundle_sha256": report.bundle_sha256.encode(),
                  b"aitrail.import.origin": str(report.origin).encode(),
                  b"aitrail.import.key_fingerprint": str(report.fingerprint).encode(),
                  b"aitrail.import.checkpoint_sha256": report.checkpoint_sha256.encode(),
                  b"aitrail.import.exported_at": str(manifest.get("exported_at")).encode()}
    root.mkdir(parents=True, exist_ok=True)
    writer = ParquetWriter(root, f"import-{report.bundle_sha256[:12]}-{uuid.uuid4().hex[:6]}",
                           log=IMPORT_LOG)
    sources = manifest["sources"]
    for ds, name in DATASETS.items():
        if ds not in manifest["rows"]:
            continue
        table = pq.read_table(pa.BufferReader(files[name]))
        where = [_hour_bucket(sources[r["source"]]["path"]) for r in manifest["rows"][ds]]
        stored = table.drop_columns([TENANT_COLUMN])
        have = _held(root, ds, set(where))
        keep = []
        for i, d in enumerate(row_mod.row_digests(stored)):
            if have[d]:
                have[d] -= 1
                report.skipped += 1
            else:
                keep.append(i)
        if not keep:
            continue
        rows = stored.take(pa.array(keep, pa.int64()))
        rows = rows.replace_schema_metadata({**(rows.schema.metadata or {}), **provenance})
        written = writer.write_table(rows, [where[i][0] for i in keep],
                                     [where[i][1] for i in keep], dataset=ds)
        report.files += [p.relative_to(root).as_posix() for p in written]
        if ds == "spans":
            report.spans += len(keep)
        else:
            report.log_records += len(keep)
    if report.files:
        leaf_log(root, IMPORT_LOG).checkpoint()
    ws = Workspace(root, user)
    try:
        append_line(root / WORKSPACE_DIR / IMPORTS_FILE, {
            "time": datetime.now(UTC).isoformat(timespec="microseconds"), "user": ws.user,
            "bundle": str(Path(path).resolve()), **report.to_dict(),
            "checkpoint_time": checked.checkpoint_time,
            "exported_by": manifest.get("exported_by"),
            "exported_at": manifest.get("exported_at"), "selection": manifest.get("selection")})
    except OSError as e:
        raise StoreError(f"imported, but could not record the import: {e}") from None
    return report
