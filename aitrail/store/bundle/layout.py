"""What a bundle holds, by name: the one place both the exporter and the offline verifier
read the layout from (so it imports nothing heavy)."""

from __future__ import annotations

import hashlib

FORMAT = "aitrail-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
CHECKPOINT = "checkpoint"
SPANS = "spans.parquet"
LOGS = "logs.parquet"
TRACES_JSONL = "traces.otlp.jsonl"
LOGS_JSONL = "logs.otlp.jsonl"
TIMELINE = "timeline.md"
DATASETS = {"spans": SPANS, "logs": LOGS}
# The hive partition key a bundle row carries beside its stored columns: it is not part of
# the row digest (it is in the file's path), so the verifier checks it against the path of
# the log entry that proves the row.
TENANT_COLUMN = "tenant"
# The store key signs checkpoints too: the signed message is this prefix and the manifest's
# SHA-256, so a manifest signature can never be passed off as a checkpoint's (or the reverse:
# a checkpoint body starts "aitrail checkpoint v1").
SIGNED_PREFIX = b"aitrail bundle manifest v1\n"


def signed_message(manifest: bytes) -> bytes:
    return SIGNED_PREFIX + hashlib.sha256(manifest).digest()
