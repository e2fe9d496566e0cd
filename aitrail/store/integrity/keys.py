"""The store's Ed25519 signing key and signed checkpoints.

The key is created at first use: <store>/_keys/signing.key (raw 32-byte private key, mode
0600, in a 0700 directory) and signing.pub (raw public key). Its fingerprint is
"ed25519:" + the hex SHA-256 of the public key. The store's origin ("aitrail:<random id>",
in _keys/origin) goes into every checkpoint, so a checkpoint of one store is never taken
for another's.

A checkpoint is a signed note (after C2SP tlog-checkpoint): a text body, a blank line, and
one signature line.

    aitrail checkpoint v1
    origin aitrail:5f0c...
    time 2026-11-20T08:00:00.123456Z
    key ed25519 <base64 public key>
    log <name> <tree size> <hex root>
    ...

    signature ed25519:<fingerprint hex> <base64 Ed25519 signature of the body>

The public key travels inside the body, so an exported checkpoint can be checked on its own;
the fingerprint is what a person compares with the one `aitrail checkpoint` printed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ..errors import StoreError
from ..fsutil import fsync_dir

KEYS_DIR = "_keys"
HEADER = "aitrail checkpoint v1"


def fingerprint(public: bytes) -> str:
    return "ed25519:" + hashlib.sha256(public).hexdigest()


def public_key(root: Path) -> bytes | None:
    path = Path(root) / KEYS_DIR / "signing.pub"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data if len(data) == 32 else None


def origin(root: Path) -> str | None:
    try:
        return (Path(root) / KEYS_DIR / "origin").read_text().strip() or None
    except FileNotFoundError:
        return None


def _write_new(path: Path, data: bytes, mode: int) -> bool:
    """Create `path` with `data` unless it exists (another process won): durable either way."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if it exists: never replaces a key
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


class Signer:
    """The store's key, created on first use."""

    def __init__(self, root: Path) -> None:
        keys = Path(root) / KEYS_DIR
        key_path = keys / "signing.key"
        if not key_path.exists():
            keys.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(keys, 0o700)
            new = Ed25519PrivateKey.generate()
            raw = new.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            _write_new(key_path, raw, 0o600)
            fsync_dir(keys)
        try:
            raw = key_path.read_bytes()
            self._key = Ed25519PrivateKey.from_private_bytes(raw)
        except (OSError, ValueError) as e:
            raise StoreError(f"{key_path}: cannot use the store's signing key: {e}") from None
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if public_key(root) != self.public:
            pub = keys / "signing.pub"
            tmp = keys / ".signing.pub.tmp"
            tmp.write_bytes(self.public)
            os.replace(tmp, pub)
        if origin(root) is None:
            _write_new(keys / "origin", f"aitrail:{uuid.uuid4().hex}\n".encode(), 0o644)
        self.origin = origin(root)
        fsync_dir(keys)
        self.fingerprint = fingerprint(self.public)

    def sign(self, body: bytes) -> bytes:
        return self._key.sign(body)


@dataclass
class Checkpoint:
    origin: str
    time: str
    public: bytes
    logs: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # name -> (size, root)
    signature: bytes = b""
    signer: str = ""  # the fingerprint on the signature line

    def body(self) -> bytes:
        lines = [HEADER, f"origin {self.origin}", f"time {self.time}",
                 f"key ed25519 {base64.b64encode(self.public).decode()}"]
        lines += [f"log {name} {size} {root.hex()}"
                  for name, (size, root) in sorted(self.logs.items())]
        return ("\n".join(lines) + "\n").encode()

    def encode(self) -> bytes:
        sig = base64.b64encode(self.signature).decode()
        return self.body() + f"\nsignature {self.signer} {sig}\n".encode()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def signature_ok(self) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(self.signature, self.body())
        except (InvalidSignature, ValueError):
            return False
        return self.signer == self.fingerprint


class BadCheckpoint(ValueError):
    """Not a checkpoint this version can read."""


def make_checkpoint(signer: Signer, logs: dict[str, tuple[int, bytes]]) -> Checkpoint:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cp = Checkpoint(signer.origin or "", now, signer.public, dict(logs),
                    signer=signer.fingerprint)
    cp.signature = signer.sign(cp.body())
    return cp


def parse_checkpoint(data: bytes) -> Checkpoint:
    """The checkpoint in `data`; BadCheckpoint if it is not one. The signature is *not*
    checked here (signature_ok)."""
    try:
        text = data.decode()
        body, sep, tail = text.partition("\n\n")
        lines = body.split("\n")
        if not sep or lines[0] != HEADER or len(lines) < 4:
            raise BadCheckpoint("not an aitrail checkpoint")
        kv = [line.split(" ") for line in lines[1:]]
        if [k[0] for k in kv[:3]] != ["origin", "time", "key"] or kv[2][1] != "ed25519":
            raise BadCheckpoint("missing origin, time or key")
        public = base64.b64decode(kv[2][2], validate=True)
        logs: dict[str, tuple[int, bytes]] = {}
        for k in kv[3:]:
            if len(k) != 4 or k[0] != "log" or k[1] in logs:
                raise BadCheckpoint(f"bad log line {' '.join(k)!r}")
            root = bytes.fromhex(k[3])
            if len(root) != 32 or not k[2].isdigit():
                raise BadCheckpoint(f"bad log line {' '.join(k)!r}")
            logs[k[1]] = (int(k[2]), root)
        sig_line = tail.rstrip("\n").split(" ")
        if len(sig_line) != 3 or sig_line[0] != "signature" or "\n" in tail.rstrip("\n"):
            raise BadCheckpoint("missing signature line")
        cp = Checkpoint(kv[0][1], kv[1][1], public, logs,
                        base64.b64decode(sig_line[2], validate=True), sig_line[1])
    except (UnicodeDecodeError, ValueError, IndexError) as e:
        if isinstance(e, BadCheckpoint):
            raise
        raise BadCheckpoint(str(e)) from None
    if cp.body() != body.encode() + b"\n":
        raise BadCheckpoint("not in canonical form")
    return cp


def write_checkpoint(path: Path, cp: Checkpoint) -> None:
    """Atomically (temp, fsync, rename, fsync dir)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(cp.encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
