"""The per-store fingerprint key: `<store>/_keys/redaction.key`, 32 random bytes.

A fingerprint is HMAC-SHA256(key, secret) and never a plain hash: a card number or a short
password has so few possibilities that an unkeyed digest is reversed by trying them all. The
key sits outside the data files (Parquet, WAL, bundles never include `_keys/`), readable by
the store's owner only, so a copied data file says "the same secret appeared here and there"
and nothing more.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from ..fsutil import fsync_dir

log = logging.getLogger("aitrail.redaction")

KEY_DIR = "_keys"
KEY_FILE = "redaction.key"
KEY_BYTES = 32
FP_HEX = 12  # 48 bits: collisions are negligible for a store's distinct secrets


class KeyFileError(Exception):
    """The key file exists but cannot be trusted (wrong size, readable by others)."""


def key_path(store_root: str | os.PathLike[str]) -> Path:
    return Path(store_root) / KEY_DIR / KEY_FILE


def load_or_create_key(store_root: str | os.PathLike[str]) -> bytes:
    """The store's key, created at first use. Creation is atomic (written under a unique
    temporary name, fsync'd, then hard-linked into place), so concurrent writers of one store
    agree on a single key."""
    path = key_path(store_root)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
    if not path.exists():
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
            log.info("created the redaction fingerprint key %s", path)
        except FileExistsError:
            pass  # another writer of this store was first: use its key
        finally:
            os.unlink(tmp)
        fsync_dir(path.parent)
    return _read(path)


def _read(path: Path) -> bytes:
    st = path.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        mode = stat.S_IMODE(st.st_mode)
        raise KeyFileError(f"{path} is readable by other users (mode {mode:o}); "
                           f"run: chmod 600 {path}")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"{path} holds {len(key)} bytes, not {KEY_BYTES}: it was truncated or "
                        "replaced; restore it from a backup (new fingerprints would not match "
                        "old ones)")
    return key


def fingerprint(key: bytes, text: str) -> str:
    """First FP_HEX hex digits of HMAC-SHA256(key, UTF-8 text)."""
    data = text.encode("utf-8", "surrogateescape")
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:FP_HEX]
