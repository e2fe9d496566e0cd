"""Rendering results for people (aligned tables) and for scripts (JSON)."""

from __future__ import annotations

import sys
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO
from uuid import UUID

import orjson


def _default(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, UUID):
        return str(v)
    raise TypeError


def to_json(value: Any) -> str:
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()


def cell(v: Any, width: int = 60) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        s = v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    elif isinstance(v, float):
        s = f"{v:.3f}".rstrip("0").rstrip(".")
    elif isinstance(v, (list, tuple)):
        s = ", ".join(cell(x, width) for x in v)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        s = bytes(v).hex()
    else:
        s = str(v)
    s = " ".join(s.split())
    return s if len(s) <= width else s[: width - 1] + "…"


def print_table(columns: list[str], rows: list[dict[str, Any]], out: TextIO | None = None,
                width: int = 60) -> None:
    out = out or sys.stdout
    cells = [[cell(r[c], width) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                  + "\n")


def embed_json(rows: list[dict[str, Any]], json_columns: list[str]) -> list[dict[str, Any]]:
    """Rows with JSON-typed values parsed, so scripts get nested objects, not strings."""
    if not json_columns:
        return rows
    return [{k: (orjson.loads(v) if k in json_columns and isinstance(v, str) else v)
             for k, v in r.items()} for r in rows]


def print_rows(columns: list[str], rows: list[dict[str, Any]], fmt: str,
               truncated: bool = False, out: TextIO | None = None,
               json_columns: list[str] | None = None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        out.write(to_json(embed_json(rows, json_columns or [])) + "\n")
    else:
        print_table(columns, rows, out)
        note = f"({len(rows)} row{'s' if len(rows) != 1 else ''}"
        note += ", truncated: more rows match; raise --limit)" if truncated else ")"
        out.write(note + "\n")
    if truncated and fmt == "json":
        sys.stderr.write(f"aitrail: output truncated at {len(rows)} rows; raise --limit\n")
