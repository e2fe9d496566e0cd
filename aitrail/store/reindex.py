"""Recompute the audit columns of stored files from their lossless generic part.

Run after the normalizer improves or a `[mapping]` changes. Each file is rewritten whole and
replaced atomically, so a crash leaves every file either old or new.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from .integrity.log import leaf_log
from .normalize import Normalizer
from .otlp_encode import span_attributes
from .schema import AUDIT_NAMES, SPANS_SCHEMA
from .writer import write_table


def reindex_file(path: Path, normalizer: Normalizer, store_root: Path) -> int:
    table = pq.read_table(path, schema=SPANS_SCHEMA)
    rows = table.to_pylist()
    for row in rows:
        attrs = span_attributes(row)
        resource = orjson.loads(row["resource_attributes"]) if row["resource_attributes"] else {}
        events = orjson.loads(row["events"]) if row["events"] else []
        values, lifted = normalizer.normalize(attrs, resource, events, row["status_code"] or 0)
        stored = {k: ({"$col": lifted[k]} if k in lifted else v) for k, v in attrs.items()}
        row["attributes"] = orjson.dumps(stored).decode() if stored else None
        for name in AUDIT_NAMES:
            row[name] = values.get(name)
    write_table(pa.Table.from_pylist(rows, schema=SPANS_SCHEMA), path, store_root,
                log="reindex")
    return len(rows)


def reindex_store(root: Path, normalizer: Normalizer,
                  progress: Callable[[int, int], None] | None = None) -> tuple[int, int]:
    """Returns (files, spans) rewritten."""
    files = sorted((Path(root) / "spans").glob("tenant=*/date=*/hour=*/*.parquet"))
    spans = 0
    for i, f in enumerate(files, start=1):
        spans += reindex_file(f, normalizer, Path(root))
        if progress:
            progress(i, len(files))
    if files:
        leaf_log(root, "reindex").checkpoint()
    return len(files), spans
