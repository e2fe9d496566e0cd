"""Write-ahead log: what the collector acknowledges is on disk, fsync'd, before the ack.

Records are appended to numbered segment files under <store>/_wal/<writer>/. Appends are
group-committed: each caller writes its record, then the first caller to need an fsync does
one for everyone written so far (trust.md measured ~3 ms per fdatasync on this disk, so an
fsync per request would cap ingest at a few hundred requests/s).

Record: MAGIC (4 bytes) | payload length (u32 LE) | crc32 of payload (u32 LE) | payload.

Recovery (`WAL.open`) reads every segment. A record cut short or damaged at the very end of
the last segment is a torn write that was never acknowledged: the tail is truncated there.
Damage anywhere else means the log cannot be trusted and opening fails with the file and
offset, rather than silently losing acknowledged data (unlike Loki's WAL, trust.md 4).

After an fsync error the WAL refuses all further appends: the kernel may already have dropped
the dirty pages, so a later successful fsync would prove nothing (PostgreSQL "fsyncgate").
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError
from .fsutil import fsync_dir

MAGIC = b"ATW1"
_HEADER = struct.Struct("<4sII")
SEGMENT_BYTES = 64 * 1024 * 1024


class WALCorrupt(StoreError):
    """Damage before the tail of the log: refusing to start is the only safe answer."""


class WALFailed(StoreError):
    """An fsync or write failed: nothing more can be acknowledged."""


@dataclass(frozen=True, order=True)
class Position:
    """A point in the log: (segment number, byte offset in it)."""

    segment: int
    offset: int


def _segment_path(directory: Path, n: int) -> Path:
    return directory / f"{n:08d}.wal"


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.stem) for p in directory.glob("*.wal") if p.stem.isdigit())


def encode_record(payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _record_parts(parts: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """encode_record of the parts joined, without joining them (a request is ~0.7 MB:
    each copy also costs page faults on a fresh allocation)."""
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return (_HEADER.pack(MAGIC, sum(map(len, parts)), crc), *parts)


def _intact_record_after(data: bytes, off: int) -> bool:
    """Whether a whole record with a matching checksum starts anywhere after `off`."""
    i = data.find(MAGIC, off + 1)
    while i != -1 and len(data) - i >= _HEADER.size:
        _, length, crc = _HEADER.unpack_from(data, i)
        end = i + _HEADER.size + length
        if end <= len(data) and zlib.crc32(data[i + _HEADER.size:end]) == crc:
            return True
        i = data.find(MAGIC, i + 1)
    return False


def read_segment(path: Path, last: bool) -> tuple[list[tuple[Position, bytes]], int]:
    """Records of one segment with their end positions, and the length of its valid prefix.
    Raises WALCorrupt for damage that is not a torn tail of the last segment."""
    data = path.read_bytes()
    n = int(path.stem)
    records: list[tuple[Position, bytes]] = []
    off = 0
    while off < len(data):
        problem = None
        if len(data) - off < _HEADER.size:
            problem = "truncated record header"
        else:
            magic, length, crc = _HEADER.unpack_from(data, off)
            end = off + _HEADER.size + length
            if magic != MAGIC:
                problem = "bad record marker"
            elif end > len(data):
                problem = "truncated record"
            elif zlib.crc32(data[off + _HEADER.size:end]) != crc:
                problem = "checksum mismatch"
                # A torn write at the end of the file may leave garbage; anything after it
                # means a record in the middle is damaged.
                if end < len(data):
                    last = False
        if problem is not None:
            # A damaged marker or length hides where the record ends, so "at the very end"
            # is judged by what follows: an intact record after the damage was acknowledged.
            if last and not _intact_record_after(data, off):
                return records, off
            raise WALCorrupt(
                f"{path}: {problem} at byte {off}; acknowledged data after it may be lost. "
                "Restore the file from a backup, or move the WAL directory aside to start "
                "without it (its unflushed spans are then lost)")
        records.append((Position(n, end), data[off + _HEADER.size:end]))
        off = end
    return records, off


def peek(directory: Path) -> Iterator[tuple[Position, bytes]]:
    """Another live writer's records, read-only and best effort: stops at the first damage
    or at a segment trimmed away meanwhile (its records were flushed)."""
    for n in _segments(directory):
        try:
            records, _ = read_segment(_segment_path(directory, n), last=True)
        except (OSError, WALCorrupt):
            return
        yield from records


class WAL:
    """One writer's log. Thread-safe: many request threads append concurrently."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()  # guards the file and positions
        self._sync_lock = threading.Lock()  # one fsync at a time
        self._failed: str | None = None
        self._file = None
        self._segment = 0
        self._written = 0  # bytes written to the current segment
        self._synced = Position(0, 0)

    def open(self) -> list[tuple[Position, bytes]]:
        """Recover: every valid record already in the log (oldest first); truncates a torn
        tail; then opens the last segment for appending."""
        self.dir.mkdir(parents=True, exist_ok=True)
        segs = _segments(self.dir)
        records: list[tuple[Position, bytes]] = []
        valid = 0
        for i, n in enumerate(segs):
            recs, valid = read_segment(_segment_path(self.dir, n), last=i == len(segs) - 1)
            records += recs
        if segs:
            self._segment = segs[-1]
            path = _segment_path(self.dir, self._segment)
            if path.stat().st_size != valid:
                with open(path, "r+b") as f:
                    f.truncate(valid)
                    os.fsync(f.fileno())
        else:
            self._segment, valid = 1, 0
        self._file = open(_segment_path(self.dir, self._segment), "ab")  # noqa: SIM115
        fsync_dir(self.dir)
        self._written = valid
        self._synced = Position(self._segment, valid)
        return records

    @property
    def position(self) -> Position:
        """The end of what has been written (not necessarily synced)."""
        return Position(self._segment, self._written)

    def append(self, payload: bytes | tuple[bytes, ...],
                on_written: Callable[[Position], None] | None = None) -> Position:
        """Write one record and return once it is fsync'd (group commit). The payload may
        come in parts (written one after the other, as one record). The returned position
        is the record's end. `on_written` runs under the log's lock right after the write,
        so callers see records in log order (before they are durable)."""
        record = _record_parts(payload if isinstance(payload, tuple) else (payload,))
        size = sum(map(len, record))
        with self._lock:
            if self._failed:
                raise WALFailed(self._failed)
            if self._written and self._written + size > self.segment_bytes:
                self._rotate()
            try:
                # A part bigger than the file's buffer goes to the kernel without a copy.
                for part in record:
                    self._file.write(part)
            except OSError as e:
                self._fail(f"WAL write failed: {e.strerror or e}")
            self._written += size
            end = Position(self._segment, self._written)
            if on_written is not None:
                on_written(end)
        self._sync_to(end)
        return end

    def _rotate(self) -> None:
        self._flush_and_sync_locked()
        self._file.close()
        self._segment += 1
        self._written = 0
        self._file = open(_segment_path(self.dir, self._segment), "ab")  # noqa: SIM115
        fsync_dir(self.dir)

    def _flush_and_sync_locked(self) -> None:
        try:
            self._file.flush()
            os.fdatasync(self._file.fileno())
        except OSError as e:
            self._fail(f"WAL fsync failed: {e.strerror or e}")
        self._synced = Position(self._segment, self._written)

    def _sync_to(self, end: Position) -> None:
        if self._synced >= end:
            return
        with self._sync_lock:
            if self._synced >= end:  # another caller's fsync covered us
                return
            with self._lock:
                if self._failed:
                    raise WALFailed(self._failed)
                try:
                    self._file.flush()
                except OSError as e:
                    self._fail(f"WAL write failed: {e.strerror or e}")
                target = Position(self._segment, self._written)
                # A duplicate: a rotation may close the file while we sync outside the lock.
                fd = os.dup(self._file.fileno())
            try:
                os.fdatasync(fd)  # outside the lock: appends go on while we wait
            except OSError as e:
                with self._lock:
                    self._fail(f"WAL fsync failed: {e.strerror or e}")
            finally:
                os.close(fd)
            with self._lock:
                if target > self._synced:
                    self._synced = target

    def _fail(self, message: str) -> None:
        self._failed = message
        raise WALFailed(message)

    @property
    def failed(self) -> str | None:
        return self._failed

    @property
    def synced(self) -> Position:
        """Everything up to here is durable."""
        return self._synced

    def locate(self, end: Position, n: int) -> tuple[str, int]:
        """(file, offset) of the last `n` bytes of the record ending at `end` (for a reader
        in another process, which reads them itself)."""
        return str(_segment_path(self.dir, end.segment)), end.offset - n

    def read_tail(self, end: Position, n: int) -> bytes:
        """The last `n` bytes of the durable record ending at `end` (the collector keeps
        only positions in memory and reads a request back when it flushes it)."""
        with open(_segment_path(self.dir, end.segment), "rb") as f:
            data = os.pread(f.fileno(), n, end.offset - n)
        if len(data) != n:
            raise WALCorrupt(f"{_segment_path(self.dir, end.segment)}: record ending at byte "
                             f"{end.offset} is cut short")
        return data

    def trim(self, before: Position) -> int:
        """Delete whole segments that end at or before `before`; returns how many."""
        removed = 0
        for n in _segments(self.dir):
            if n < before.segment and n != self._segment:
                _segment_path(self.dir, n).unlink(missing_ok=True)
                removed += 1
        if removed:
            fsync_dir(self.dir)
        return removed

    def close(self) -> None:
        with self._lock:
            if self._file is not None and not self._failed:
                self._file.flush()
                os.fdatasync(self._file.fileno())
                self._file.close()
            self._file = None


def iter_records(directory: Path) -> Iterator[tuple[Position, bytes]]:
    """Read-only scan of a WAL directory (for tools and tests)."""
    segs = _segments(Path(directory))
    for i, n in enumerate(segs):
        recs, _ = read_segment(_segment_path(Path(directory), n), last=i == len(segs) - 1)
        yield from recs
