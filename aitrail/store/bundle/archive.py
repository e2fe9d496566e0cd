"""A bundle's files, from a .tar.gz or a directory, read whole into memory (a bundle is a
postmortem's evidence: megabytes, not gigabytes) and refused if its shape is not a flat set
of regular files: no links, paths or duplicates that could make a name mean two things."""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from pathlib import Path

from .layout import MANIFEST

MAX_BYTES = 4 * 2**30


class Unreadable(Exception):
    """Not a bundle this version can open (exit code 2)."""


def is_bundle(path: Path) -> bool:
    """A .tar.gz file, or a directory holding manifest.json: what `aitrail verify` checks as
    a bundle rather than a store."""
    path = Path(path)
    if path.is_dir():
        return (path / MANIFEST).is_file()
    return path.is_file() and (path.name.endswith((".tar.gz", ".tgz")) or _gzip_magic(path))


def _gzip_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _plain(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def read_bundle(path: Path) -> dict[str, bytes]:
    """name -> bytes of every file in the bundle."""
    path = Path(path)
    files: dict[str, bytes] = {}
    if path.is_dir():
        for p in sorted(path.iterdir()):
            if not p.is_file() or p.is_symlink():
                raise Unreadable(f"{p}: not a regular file (a bundle is a flat set of files)")
            files[p.name] = p.read_bytes()
        return files
    try:
        with tarfile.open(path, "r:gz") as tar:
            total = 0
            for m in tar:
                name = m.name.removeprefix("./")
                if not m.isfile() or not _plain(name):
                    raise Unreadable(f"{path}: member {m.name!r} is not a plain file")
                if name in files:
                    raise Unreadable(f"{path}: member {name!r} appears twice")
                total += m.size
                if total > MAX_BYTES:
                    raise Unreadable(f"{path}: larger than {MAX_BYTES >> 30} GiB unpacked")
                f = tar.extractfile(m)
                if f is None:
                    raise Unreadable(f"{path}: member {name!r} cannot be read")
                files[name] = f.read()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise Unreadable(f"{path}: not a readable .tar.gz bundle ({e})") from None
    return files


def write_tar_gz(files: dict[str, bytes], dest: Path) -> None:
    """Deterministic members (sorted, mtime 0, no owner) so the same export packs the same."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    tmp.replace(dest)
