"""The append-only leaf log: one line per published, replaced or retired data file.

Each writer appends to its own log, <store>/_integrity/<name>/log: a collector process to the
one named by its writer id; `aitrail ingest`, compaction and reindex to "ingest", "compact"
and "reindex" (several processes may share those: appends take an flock). A line is one
JSON object with sorted keys:

    seq      1, 2, 3, ... (no gaps)
    prev     hex RFC 6962 leaf hash of the previous line (64 zeros for the first): the chain
    kind     add | replace | retire | void
    path     the data file, relative to the store (spans/tenant=.../x.parquet)
    sha256   of the whole file; size (bytes); rows; rows_root (rows.py); rows_digest: "v1"
    replaces [{path, sha256, rows, rows_root}] (replace: the files it takes the place of)
    dropped  [hex row digest] (replace: exact duplicate rows it left out)
    reason   (retire, void); void_seq (void: the entry of this log that never took effect)
    time     nanoseconds since the epoch

The line's bytes are the leaf of an RFC 6962 tree per log (merkle.py); signed checkpoints
(keys.py) carry each log's size and root.

Ordering and crash rules (docs/integrity.md): an entry is appended and fsync'd *before* its
file is renamed into place, under the shared publish lock, so every file a reader can see is
in a log. A crash between the two leaves an entry whose file never appeared; its temporary
file holds the logged bytes. The collector retires the entries of an unfinished flush at
restart (before deleting its files), and compaction voids a replacement whose directory swap
never happened. A line cut short by a crash (no newline) is dropped by the next append: it
was never fsync'd, so its file was never renamed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import orjson

from ..errors import StoreError
from ..fsutil import fsync_dir
from . import merkle

INTEGRITY_DIR = "_integrity"
ZERO = "0" * 64
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
READ_CHUNK = 1 << 20


def log_dir(root: Path, name: str) -> Path:
    return Path(root) / INTEGRITY_DIR / name


def log_names(root: Path) -> list[str]:
    base = Path(root) / INTEGRITY_DIR
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "log").is_file())


def file_sha256(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(READ_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class LeafLog:
    """Appends to one log; keeps its chain head and tree frontier in memory (resumed from
    the state saved with its last checkpoint, so opening a long log reads only its tail)."""

    def __init__(self, root: Path, name: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"invalid integrity log name {name!r}")
        self.root = Path(root)
        self.name = name
        self.dir = log_dir(root, name)
        self.path = self.dir / "log"
        self._lock = threading.Lock()
        self._end = 0  # bytes of complete lines applied
        self.seq = 0
        self.prev = ZERO
        self.frontier = merkle.Frontier()
        self._resumed = False
        self._file: tuple[int, int] | None = None  # (device, inode) of the log we follow
        self._last_checkpoint = 0.0

    # -- reading ---------------------------------------------------------------------------

    def _resume(self) -> None:
        """Start from the state saved with the last checkpoint, if it matches the log."""
        self._resumed = True
        try:
            state = orjson.loads((self.dir / "state.json").read_bytes())
            end, prev = int(state["end"]), state["prev"]
            if end <= 0 or end > self.path.stat().st_size:
                return
            with open(self.path, "rb") as f:
                f.seek(max(0, end - 65536))
                tail = f.read(end - max(0, end - 65536))
            last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
            if not tail.endswith(b"\n") or merkle.leaf_hash(last).hex() != prev:
                return
            frontier = merkle.Frontier()
            frontier.size = int(state["size"])
            frontier._stack = [(h, bytes.fromhex(x)) for h, x in state["frontier"]]
        except (OSError, ValueError, KeyError, TypeError):
            return
        self._end, self.seq, self.prev, self.frontier = end, int(state["seq"]), prev, frontier

    def _catch_up(self, fd: int, truncate_torn: bool) -> None:
        """Apply lines other processes appended since we last looked."""
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self._file or st.st_size < self._end:
            # Another file than the one we followed (a store deleted and made again at the
            # same path): start over rather than chain onto a head it does not have.
            self._file = (st.st_dev, st.st_ino)
            self._end, self.seq, self.prev = 0, 0, ZERO
            self.frontier = merkle.Frontier()
            self._resumed = False
        if not self._resumed:
            self._resume()
        size = st.st_size
        while self._end < size:
            data = os.pread(fd, min(READ_CHUNK * 8, size - self._end), self._end)
            cut = data.rfind(b"\n")
            if cut < 0:
                if self._end + len(data) < size:  # a line longer than the read: read more
                    data = os.pread(fd, size - self._end, self._end)
                    cut = data.rfind(b"\n")
                if cut < 0:
                    break
            for line in data[:cut].split(b"\n"):
                self._apply(line)
            self._end += cut + 1
        if self._end < size and truncate_torn:
            # A line without its newline: an append cut short by a crash, never fsync'd.
            os.ftruncate(fd, self._end)

    def _apply(self, line: bytes) -> None:
        try:
            seq = orjson.loads(line)["seq"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise StoreError(f"{self.path}: damaged entry after seq {self.seq}; run "
                             "`aitrail verify`") from None
        self.seq = seq
        leaf = merkle.leaf_hash(line)
        self.prev = leaf.hex()
        self.frontier.append(leaf)

    def entries_from_end(self) -> Iterator[dict]:
        """Entries, newest first (reads the file backwards)."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return
        with f:
            pos = os.fstat(f.fileno()).st_size
            rest = b""
            while pos > 0:
                step = min(READ_CHUNK, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + rest
                lines = data.split(b"\n")
                rest = lines[0]
                for line in reversed(lines[1:]):
                    if line:
                        try:
                            yield orjson.loads(line)
                        except orjson.JSONDecodeError:  # a torn tail
                            continue
            if rest:
                try:
                    yield orjson.loads(rest)
                except orjson.JSONDecodeError:
                    return

    # -- appending ---------------------------------------------------------------------------

    def _open(self) -> int:
        if not self.dir.is_dir():
            self.dir.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.dir.parent)
        new = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        if new:
            fsync_dir(self.dir)
        return fd

    def append(self, fields: dict) -> dict:
        """Append one entry and fsync it; returns the entry as written."""
        fd = self._open()
        try:
            with self._lock:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    self._catch_up(fd, truncate_torn=True)
                    entry = {**fields, "seq": self.seq + 1, "prev": self.prev,
                             "time": time.time_ns()}
                    line = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
                    os.write(fd, line + b"\n")
                    self._apply(line)
                    self._end += len(line) + 1
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            # Outside the locks: threads publishing in parallel overlap their syncs.
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return entry

    def head(self) -> tuple[int, bytes]:
        """(tree size, root) of everything appended so far, by any process."""
        fd = self._open()
        try:
            with self._lock:
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    self._catch_up(fd, truncate_torn=False)
                    state = (self.frontier.size, self.frontier.root(), self._end, self.seq,
                             self.prev, list(self.frontier._stack))
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        size, root, end, seq, prev, stack = state
        self._state = {"end": end, "seq": seq, "prev": prev, "size": size,
                       "frontier": [(h, x.hex()) for h, x in stack]}
        return size, root

    def checkpoint(self) -> Path:
        """Sign this log's head into <log dir>/checkpoint (and save the resume state)."""
        from .keys import make_checkpoint, write_checkpoint

        size, root = self.head()
        cp = make_checkpoint(_signer(self.root), {self.name: (size, root)})
        path = self.dir / "checkpoint"
        write_checkpoint(path, cp)
        tmp = self.dir / ".state.json.tmp"
        tmp.write_bytes(orjson.dumps(self._state))
        os.replace(tmp, self.dir / "state.json")  # a hint only: checked before it is used
        self._last_checkpoint = time.monotonic()
        return path

    def checkpoint_every(self, interval_s: float) -> Path | None:
        if time.monotonic() - self._last_checkpoint < interval_s:
            return None
        return self.checkpoint()


def store_checkpoint(root: Path) -> tuple[Path, object]:
    """Sign the heads of every log of the store into <store>/_integrity/checkpoint: the one
    to anchor elsewhere (`aitrail checkpoint export`)."""
    from .keys import make_checkpoint, write_checkpoint

    heads = {name: leaf_log(root, name).head() for name in log_names(root)}
    cp = make_checkpoint(_signer(root), heads)
    path = Path(root) / INTEGRITY_DIR / "checkpoint"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(path, cp)
    return path, cp


_logs: OrderedDict[tuple[str, str], LeafLog] = OrderedDict()
_signers: OrderedDict[tuple[str, int, int], object] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE = 64  # tests make hundreds of stores: keep the few in use


def leaf_log(root: Path, name: str) -> LeafLog:
    """This process's LeafLog for (store, name)."""
    key = (os.path.realpath(root), name)
    with _cache_lock:
        log = _logs.get(key)
        if log is None:
            log = _logs[key] = LeafLog(Path(root), name)
            while len(_logs) > _CACHE:
                _logs.popitem(last=False)
        _logs.move_to_end(key)
        return log


def _signer(root: Path):
    from .keys import KEYS_DIR, Signer

    try:  # a store made again at the same path has another key file
        st = os.stat(Path(root) / KEYS_DIR / "signing.key")
        key = (os.path.realpath(root), st.st_dev, st.st_ino)
    except FileNotFoundError:
        key = (os.path.realpath(root), 0, 0)
    with _cache_lock:
        s = _signers.get(key)
    if s is None:
        s = Signer(Path(root))
        with _cache_lock:
            if key[1:] != (0, 0):  # only a key that existed before this call is cached
                _signers[key] = s
            while len(_signers) > _CACHE:
                _signers.popitem(last=False)
    return s
