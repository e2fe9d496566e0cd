"""Where to look: one hyperscan pass over a request's serialized bytes reports where each
prefilter matched; the byte ranges of its resources, scopes and items (spans or log records)
then say which of them to walk. A clean request costs that one scan (~800 MB/s here for
AI spans, every prefilter at once).

The callback is Python, so matches are capped: past MAX_ENDS (a value made of near-misses,
say a megabyte of digits) each region is rescanned with SINGLEMATCH patterns instead, which
report at most one hit per pattern.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import hyperscan

# Region keys: ("r", i) resource i (and its schema_url), ("s", i, j) scope j of resource i,
# ("i", i, j, k) item k of that scope, ("q",) anything else at the request's top level.
RegionKey = tuple[str, int, int, int] | tuple[str, int, int] | tuple[str, int] | tuple[str]


MAX_ENDS = 4096


class WireError(ValueError):
    """Bytes that are not the protobuf layout expected (the caller then walks everything)."""


class Matcher:
    """Two hyperscan block-mode databases of the same patterns: one reports every match end
    (to place hits in items), one at most one hit per pattern (the bounded fallback)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._every = _database(patterns, 0)
        self._single = _database(patterns, hyperscan.HS_FLAG_SINGLEMATCH)
        self._prototypes = (hyperscan.Scratch(self._every), hyperscan.Scratch(self._single))
        self._local = threading.local()  # a scratch space is per thread

    def _scratch(self) -> tuple[hyperscan.Scratch, hyperscan.Scratch]:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = tuple(p.clone() for p in self._prototypes)
        return scratch

    def ends(self, data: bytes, limit: int = MAX_ENDS) -> list[tuple[int, int]] | None:
        """(end offset, pattern id) of every match, or None past `limit` matches (a value
        full of near-misses: the caller falls back to `scan` per region)."""
        found: list[tuple[int, int]] = []
        if not data:
            return found

        def on_match(pattern_id: int, _start: int, end: int, _flags: int, _ctx: object) -> bool:
            found.append((end, pattern_id))
            return len(found) >= limit

        try:
            self._every.scan(data, match_event_handler=on_match, scratch=self._scratch()[0])
        except hyperscan.ScanTerminated:
            return None
        return found

    def scan(self, data: bytes) -> set[int]:
        """Ids of the patterns that match somewhere in `data`."""
        hits: set[int] = set()
        if data:
            self._single.scan(data, match_event_handler=_on_match, context=hits,
                              scratch=self._scratch()[1])
        return hits


def _database(patterns: Sequence[str], flag: int) -> hyperscan.Database:
    n = len(patterns)
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=[p.encode() for p in patterns], ids=list(range(n)), elements=n,
               flags=[flag] * n)
    return db


def _on_match(pattern_id: int, _start: int, _end: int, _flags: int, hits: set[int]) -> None:
    hits.add(pattern_id)


def compile_check(pattern: str) -> str | None:
    """None if hyperscan compiles `pattern`, else its complaint."""
    try:
        _database([pattern], hyperscan.HS_FLAG_SINGLEMATCH)
    except hyperscan.error as e:
        return str(e)
    return None


# -- the protobuf wire layout of Export{Trace,Logs}ServiceRequest ----------------------------
# Both requests nest the same way: 1 resource_* -> {1 resource, 2 scope_* -> {1 scope,
# 2 items, 3 schema_url}, 3 schema_url}.

def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise WireError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _field(buf: bytes, i: int, end: int) -> tuple[int, int, int, int]:
    """(field number, wire type, start, end) of the field at buf[i], within buf[:end]."""
    tag, i = _varint(buf, i)
    field, wtype = tag >> 3, tag & 7
    s = i
    if wtype == 0:
        _, i = _varint(buf, i)
    elif wtype == 1:
        i += 8
    elif wtype == 2:
        n, s = _varint(buf, i)
        i = s + n
    elif wtype == 5:
        i += 4
    else:
        raise WireError(f"wire type {wtype} (groups) is not used by OTLP")
    if i > end:
        raise WireError("field runs past its message")
    return field, wtype, s, i


def _fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    i = start
    while i < end:
        f = _field(buf, i, end)
        yield f
        i = f[3]


def regions(buf: bytes) -> list[tuple[RegionKey, int, int]]:
    """Byte ranges of every resource, scope and item of a serialized request, in order."""
    out: list[tuple[RegionKey, int, int]] = []
    i = 0
    for f, wt, s, e in _fields(buf, 0, len(buf)):
        if f != 1 or wt != 2:
            out.append((("q",), s, e))
            continue
        j = 0
        for f2, wt2, s2, e2 in _fields(buf, s, e):
            if f2 != 2 or wt2 != 2:
                out.append((("r", i), s2, e2))
                continue
            k, p = 0, s2
            while p < e2:  # items: the hot loop, so their tag (0x12) is inlined
                if buf[p] == 0x12:
                    n, s3 = _varint(buf, p + 1)
                    e3 = s3 + n
                else:
                    f3, wt3, s3, e3 = _field(buf, p, e2)
                    if f3 != 2 or wt3 != 2:
                        out.append((("s", i, j), s3, e3))
                        p = e3
                        continue
                if e3 > e2:
                    raise WireError("field runs past its message")
                out.append((("i", i, j, k), s3, e3))
                k += 1
                p = e3
            j += 1
        i += 1
    return out
