"""Which stored spans hold text that may be an unmasked secret, found with hyperscan over
Arrow batches.

The findings rules `forbidden_input` and `content_unredacted` look for secret shapes in what
went into a span (sql/findings.sql, `_unmasked`). A cheap literal pass picks the rare
candidate span first; DuckDB's RE2 did that at ~1.8 CPU-s per 1M spans (563 MB of text), one
hyperscan pass over each Arrow column's data buffer at ~0.2 CPU-s. The candidates' text is
then confirmed in SQL by the very same shapes, so both scans find the same secrets.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

import pyarrow as pa

from .redaction.matcher import Matcher

# The literals that lead every shape `_unmasked` confirms; `_secret_candidate` in
# sql/findings.sql is their alternation (findings.py writes it there). Each has a fixed
# length, so a match's start is its end minus that length.
CANDIDATES = ("PRIVATE KEY", "AKIA", "ASIA", "gh[pousr]_", "glpat-", "xox[abprs]-", "sk-",
              "eyJ", "://")
_LENGTHS = tuple(len(re.sub(r"\[[^\]]*\]", "x", p)) for p in CANDIDATES)
_matcher: Matcher | None = None


def candidate_pattern() -> str:
    """The candidates as one RE2 alternation (for SQL)."""
    return "|".join(CANDIDATES)


def _get_matcher() -> Matcher:
    global _matcher
    if _matcher is None:
        _matcher = Matcher(CANDIDATES)
    return _matcher


def candidate_rows(values: pa.Array) -> set[int]:
    """Indexes of the values that contain a candidate literal.

    One scan of the column's data buffer, where values lie end to end: a match is counted
    only for the value it lies wholly within, as a per-value scan would find it."""
    if len(values) == 0 or values.null_count == len(values):
        return set()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.large_string())
    _validity, offsets_buf, data = values.buffers()
    width = pa.int64() if pa.types.is_large_string(values.type) else pa.int32()
    offsets = pa.Array.from_buffers(width, len(values) + 1, [None, offsets_buf],
                                    offset=values.offset)
    lo, hi = offsets[0].as_py(), offsets[-1].as_py()
    if data is None or hi <= lo:
        return set()
    view = memoryview(data)[lo:hi]
    matcher = _get_matcher()
    ends = matcher.ends(view)
    bounds = [o - lo for o in offsets.to_pylist()] if ends != [] else []
    rows: set[int] = set()
    if ends is None:  # a column full of near-misses: one bounded scan per value
        for r in range(len(values)):
            if bounds[r + 1] > bounds[r] and matcher.scan(view[bounds[r]:bounds[r + 1]]):
                rows.add(r)
        return rows
    for end, pattern in ends:
        start = end - _LENGTHS[pattern]
        r = bisect.bisect_right(bounds, start) - 1
        if end <= bounds[r + 1]:
            rows.add(r)
    return rows


def secret_text(columns: Sequence[pa.Array]) -> pa.Array:
    """Per row, the texts joined by a space (as SQL concat_ws) where any of them holds a
    candidate; NULL elsewhere."""
    n = len(columns[0]) if columns else 0
    rows: set[int] = set()
    for col in columns:
        rows |= candidate_rows(col)
    if not rows:
        return pa.nulls(n, pa.string())
    out: list[str | None] = [None] * n
    for r in rows:
        texts = [c[r].as_py() for c in columns]
        out[r] = " ".join(t for t in texts if t is not None)
    return pa.array(out, pa.string())
