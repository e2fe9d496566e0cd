"""`aitrail verify` against tampered stores: every mutation class, applied at positions
hypothesis draws over stores written by the real write path, is reported with its class;
untouched stores (plain, compacted, reindexed, with duplicates) verify clean."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import shutil
import tempfile
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrail.cli import main
from aitrail.store.compact import compact_store
from aitrail.store.integrity import keys
from aitrail.store.integrity.log import store_checkpoint
from aitrail.store.integrity.verify import NOTES, PROBLEMS, verify_store
from aitrail.store.normalize import Normalizer
from aitrail.store.reindex import reindex_store

from .conftest import LATER, build, copy_store

EXAMPLES = 12  # per mutation class; each copies a store and verifies it (~0.1 s)


def _files(root: Path) -> list[Path]:
    return sorted((root / "spans").glob("*/*/*/*.parquet"))


def _log(root: Path, name: str = "") -> Path:
    logs = sorted((root / "_integrity").glob("*/log"))
    return next(p for p in logs if p.parent.name == name) if name else logs[0]


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# -- mutations: each changes a copied store at drawn positions and returns the classes that
# -- verify must report (any one of them when several describe the same act) --------------

def flip_bit(root: Path, draw) -> set[str]:
    f = draw(st.sampled_from(_files(root)))
    data = bytearray(f.read_bytes())
    bit = draw(st.integers(0, len(data) * 8 - 1))
    data[bit // 8] ^= 1 << (bit % 8)
    f.write_bytes(bytes(data))
    return {"modified"}


def delete_file(root: Path, draw) -> set[str]:
    draw(st.sampled_from(_files(root))).unlink()
    return {"deleted"}


def insert_file(root: Path, draw, other: Path) -> set[str]:
    src = draw(st.sampled_from(_files(other)))
    part = draw(st.sampled_from(_files(root))).parent
    shutil.copy(src, part / f"zz-{draw(st.integers(0, 999))}.parquet")
    return {"inserted"}


def swap_files(root: Path, draw) -> set[str]:
    files = _files(root)
    a = draw(st.sampled_from(files))
    b = draw(st.sampled_from([f for f in files if f != a]))
    tmp = a.with_name(".swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    return {"swapped"}


def rename_file(root: Path, draw) -> set[str]:
    f = draw(st.sampled_from(_files(root)))
    dest = draw(st.sampled_from(_files(root))).parent / f"renamed-{f.name}"
    os.rename(f, dest)
    return {"renamed"}


def remove_entry(root: Path, draw) -> set[str]:
    log = _log(root)
    lines = _lines(log)
    i = draw(st.integers(0, len(lines) - 1))
    log.write_bytes(b"".join(lines[:i] + lines[i + 1:]))
    # The last entry removed leaves an intact chain: the signed checkpoint still counts it.
    return {"log_truncated"} if i == len(lines) - 1 else {"log_chain"}


def reorder_entries(root: Path, draw) -> set[str]:
    log = _log(root)
    lines = _lines(log)
    i = draw(st.integers(0, len(lines) - 2))
    j = draw(st.integers(i + 1, len(lines) - 1))
    lines[i], lines[j] = lines[j], lines[i]
    log.write_bytes(b"".join(lines))
    return {"log_chain"}


def truncate_tail(root: Path, draw) -> set[str]:
    log = _log(root)
    lines = _lines(log)
    keep = draw(st.integers(0, len(lines) - 1))
    log.write_bytes(b"".join(lines[:keep]))
    return {"log_truncated"}


def edit_entry(root: Path, draw) -> set[str]:
    """An entry rewritten to match a tampered file: its chain or its checkpoint breaks."""
    log = _log(root)
    lines = _lines(log)
    i = draw(st.integers(0, len(lines) - 1))
    e = orjson.loads(lines[i])
    e["rows"] += 1
    lines[i] = orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n"
    log.write_bytes(b"".join(lines))
    return {"log_chain", "log_rewritten"}


def _checkpoints(root: Path) -> list[Path]:
    return sorted((root / "_integrity").glob("**/checkpoint"))


def bad_signature(root: Path, draw) -> set[str]:
    path = draw(st.sampled_from(_checkpoints(root)))
    cp = keys.parse_checkpoint(path.read_bytes())
    sig = bytearray(cp.signature)
    bit = draw(st.integers(0, len(sig) * 8 - 1))
    sig[bit // 8] ^= 1 << (bit % 8)
    cp.signature = bytes(sig)
    path.write_bytes(cp.encode())
    return {"checkpoint_signature"}


def changed_body(root: Path, draw) -> set[str]:
    path = draw(st.sampled_from(_checkpoints(root)))
    cp = keys.parse_checkpoint(path.read_bytes())
    name = draw(st.sampled_from(sorted(cp.logs)))
    size, head = cp.logs[name]
    cp.logs[name] = (size + draw(st.integers(1, 5)), head)  # signature kept
    path.write_bytes(cp.encode())
    return {"checkpoint_signature"}


def wrong_key(root: Path, draw) -> set[str]:
    path = draw(st.sampled_from(_checkpoints(root)))
    cp = keys.parse_checkpoint(path.read_bytes())
    other = Ed25519PrivateKey.generate()
    cp.public = other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    cp.signer = cp.fingerprint
    cp.signature = other.sign(cp.body())
    path.write_bytes(cp.encode())
    return {"checkpoint_key"}


def resurrect_input(root: Path, draw, uncompacted: Path) -> set[str]:
    src = draw(st.sampled_from(_files(uncompacted)))
    shutil.copy(src, root / src.relative_to(uncompacted))
    return {"retired_present"}


def _retention_log(root: Path) -> Path:
    return root / "_integrity" / "retention" / "log"


def remove_tombstone(root: Path, draw) -> set[str]:
    log = _retention_log(root)
    lines = _lines(log)
    i = draw(st.sampled_from([i for i, x in enumerate(lines) if b'"retire"' in x]))
    log.write_bytes(b"".join(lines[:i] + lines[i + 1:]))
    return {"log_chain", "log_truncated", "deleted"}


def edit_hold_or_policy(root: Path, draw) -> set[str]:
    """A hold or the recorded policy edited after the fact."""
    log = _retention_log(root)
    lines = _lines(log)
    i = draw(st.sampled_from([i for i, x in enumerate(lines)
                              if b'"hold"' in x or b'"policy"' in x]))
    e = orjson.loads(lines[i])
    e["reason" if e["kind"] == "hold" else "retention_days"] = 1
    lines[i] = orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n"
    log.write_bytes(b"".join(lines))
    return {"log_chain", "log_rewritten"}


def resurrect_retired_altered(root: Path, draw, original: Path) -> set[str]:
    """A retired file put back with other bytes than it had when it was retired."""
    gone = [p for p in _files(original) if not (root / p.relative_to(original)).exists()]
    src = draw(st.sampled_from(gone))
    dest = root / src.relative_to(original)
    dest.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(src.read_bytes())
    data[draw(st.integers(0, len(data) - 1))] ^= 1
    dest.write_bytes(bytes(data))
    return {"retired_present"}


MUTATIONS = {
    "flip_bit": (flip_bit, "plain"), "delete_file": (delete_file, "plain"),
    "insert_file": (insert_file, "plain"), "swap_files": (swap_files, "plain"),
    "rename_file": (rename_file, "plain"), "remove_entry": (remove_entry, "plain"),
    "reorder_entries": (reorder_entries, "plain"), "truncate_tail": (truncate_tail, "plain"),
    "edit_entry": (edit_entry, "plain"), "bad_signature": (bad_signature, "plain"),
    "changed_body": (changed_body, "plain"), "wrong_key": (wrong_key, "plain"),
    "flip_bit_compacted": (flip_bit, "compacted"),
    "delete_compacted": (delete_file, "compacted"),
    "resurrect_input": (resurrect_input, "compacted"),
    "delete_held": (delete_file, "retired"), "remove_tombstone": (remove_tombstone, "retired"),
    "edit_hold_or_policy": (edit_hold_or_policy, "retired"),
    "resurrect_retired_altered": (resurrect_retired_altered, "retired"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_is_reported_with_its_class(base_stores, name):
    mutate, base = MUTATIONS[name]

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(data=st.data())
    def check(data):
        with tempfile.TemporaryDirectory() as tmp:
            root = copy_store(base_stores[base], Path(tmp) / "s")
            extra = {"insert_file": (base_stores["other"],),
                     "resurrect_input": (base_stores["uncompacted"],),
                     "resurrect_retired_altered": (base_stores["plain"],),
                     }.get(mutate.__name__, ())
            want = mutate(root, data.draw, *extra)
            report = verify_store(root)
            assert not report.ok
            assert report.classes() & want, (want, [f.to_dict() for f in report.problems])

    check()


@pytest.mark.parametrize("base", ["plain", "compacted", "uncompacted", "other", "retired"])
def test_untouched_stores_verify_clean(base_stores, base, tmp_path):
    report = verify_store(copy_store(base_stores[base], tmp_path / "s"))
    assert report.ok, [f.to_dict() for f in report.findings]
    assert not report.findings and report.files >= 1 and report.rows >= report.files


@settings(max_examples=8, deadline=None, database=None)
@given(flushes=st.integers(1, 4), hours=st.integers(1, 3), seed=st.integers(0, 10**6),
       duplicates=st.booleans(), compact=st.booleans(), reindex=st.booleans())
def test_generated_stores_verify_clean_after_compaction_and_reindex(flushes, hours, seed,
                                                                    duplicates, compact,
                                                                    reindex):
    with tempfile.TemporaryDirectory() as tmp:
        root = build(Path(tmp) / "s", flushes, 3, hours, seed, duplicates)
        if compact:
            assert not compact_store(root, now=LATER, grace_s=0).skipped
        if reindex:
            reindex_store(root, Normalizer())
        report = verify_store(root)
        assert report.ok and not report.findings, [f.to_dict() for f in report.findings]
        assert report.files == len(_files(root))


def test_compaction_logs_the_duplicates_it_drops_and_verify_checks_them(base_stores, tmp_path):
    root = copy_store(base_stores["compacted"], tmp_path / "s")
    entries = [orjson.loads(x) for x in _log(root, "compact").read_bytes().splitlines()]
    dropped = [d for e in entries for d in e["dropped"]]
    assert dropped  # the fixture repeats a span in each ingest run
    assert all(e["rows"] == sum(r["rows"] for r in e["replaces"]) - len(e["dropped"])
               for e in entries)
    assert verify_store(root).ok


def test_rollback_to_an_older_copy_fails_against_the_anchor(base_stores, tmp_path):
    old = copy_store(base_stores["plain"], tmp_path / "old")
    new = copy_store(old, tmp_path / "new")
    build(new, flushes=1, hours=1, seed=77)  # the store moves on
    _, anchor = store_checkpoint(new)
    assert verify_store(new, anchor.encode()).ok
    # The whole store restored from the older copy: consistent on its own ...
    assert verify_store(old).ok
    # ... but not with what was anchored.
    report = verify_store(old, anchor.encode())
    assert "rollback" in report.classes()


def test_an_anchor_from_another_key_or_store_is_refused(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    other = copy_store(base_stores["other"], tmp_path / "o")
    _, foreign = store_checkpoint(other)
    assert "checkpoint_key" in verify_store(root, foreign.encode()).classes()
    assert "checkpoint_corrupt" in verify_store(root, b"not a checkpoint").classes()


def test_a_rewritten_history_fails_against_the_anchor_even_when_resigned(base_stores,
                                                                          tmp_path):
    """Someone with the disk and the key rewrites a log and re-signs everything: only the
    anchor can tell (docs/integrity.md, non-goals)."""
    root = copy_store(base_stores["plain"], tmp_path / "s")
    _, anchor = store_checkpoint(root)
    log = _log(root)
    lines = _lines(log)
    log.write_bytes(b"".join(lines[1:] + lines[:1]))  # reordered ...
    for cp in _checkpoints(root):
        cp.unlink()
    store_checkpoint(root)  # ... and signed again with the store's own key
    report = verify_store(root, anchor.encode())
    assert {"log_chain", "log_rewritten"} <= report.classes()


def test_verify_cli_exit_codes_and_json(base_stores, tmp_path, capsys):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    assert main(["--store", str(root), "checkpoint", "export", "--out",
                 str(tmp_path / "a.cp")]) == 0
    fp = keys.fingerprint(keys.public_key(root))
    assert fp in capsys.readouterr().out
    assert main(["--store", str(root), "verify", "--anchor", str(tmp_path / "a.cp")]) == 0
    assert fp in capsys.readouterr().out
    _files(root)[0].unlink()
    assert main(["--store", str(root), "verify", "--format", "json"]) == 1
    out = orjson.loads(capsys.readouterr().out)
    assert not out["ok"] and [p["class"] for p in out["problems"]] == ["deleted"]
    assert main(["--store", str(root), "verify", "--anchor", str(tmp_path / "nope")]) == 2
    assert main(["--store", str(tmp_path / "none"), "verify"]) == 3


def test_every_class_is_documented():
    doc = (Path(__file__).resolve().parents[3] / "docs" / "integrity.md").read_text()
    for cls in [*PROBLEMS, *NOTES]:
        assert f"`{cls}`" in doc, cls


def test_signing_key_is_private_and_its_fingerprint_is_stable(base_stores):
    root = base_stores["plain"]
    keydir = root / "_keys"
    assert (keydir.stat().st_mode & 0o777) == 0o700
    assert ((keydir / "signing.key").stat().st_mode & 0o777) == 0o600
    pub = keys.public_key(root)
    cp = keys.parse_checkpoint((root / "_integrity" / _log(root).parent.name
                                / "checkpoint").read_bytes())
    assert cp.signature_ok() and cp.public == pub
    assert cp.signer == keys.fingerprint(pub) == "ed25519:" + hashlib.sha256(pub).hexdigest()
    assert base64.b64encode(pub).decode() in cp.body().decode()


def test_a_torn_log_tail_is_a_note_and_the_next_append_drops_it(base_stores, tmp_path):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    log = _log(root)
    with open(log, "ab") as f:
        f.write(b'{"kind":"add","path":"spans/x')  # a crash in the middle of an append
    report = verify_store(root)
    assert report.ok and [f.cls for f in report.notes] == ["torn_tail"]
    build(root, flushes=1, hours=1, seed=random.randrange(10**6))
    assert verify_store(root).ok and not verify_store(root).findings


def test_a_store_made_again_at_the_same_path_gets_a_fresh_chain_and_key(tmp_path):
    """This process's cached log heads and signer must not leak into a new store at the
    same path (tests and scripts delete and rebuild stores)."""
    root = tmp_path / "s"
    build(root, flushes=2, hours=1, seed=11)
    first_key = keys.public_key(root)
    shutil.rmtree(root)
    build(root, flushes=1, hours=2, seed=12)
    assert keys.public_key(root) != first_key
    report = verify_store(root)
    assert report.ok and not report.findings, [f.to_dict() for f in report.findings]


def test_adopt_enters_a_pre_integrity_store_in_the_log(base_stores, tmp_path, capsys):
    root = copy_store(base_stores["plain"], tmp_path / "s")
    shutil.rmtree(root / "_integrity")  # as a store written before integrity existed
    report = verify_store(root)
    assert report.classes() == {"inserted"} and len(report.problems) == len(_files(root))
    assert main(["--store", str(root), "checkpoint", "adopt", "--dry-run"]) == 0
    assert verify_store(root).classes() == {"inserted"}
    assert main(["--store", str(root), "checkpoint", "adopt"]) == 0
    assert f"{len(_files(root))} unlogged file(s) adopted" in capsys.readouterr().out
    report = verify_store(root)
    assert report.ok and not report.findings and report.files == len(_files(root))
    entries = [orjson.loads(x) for x in _lines(root / "_integrity" / "adopt" / "log")]
    assert all(e["adopted"] for e in entries)
    # Adopted files are then guarded like any other.
    f = _files(root)[0]
    f.write_bytes(f.read_bytes()[:-1] + bytes([f.read_bytes()[-1] ^ 1]))
    assert verify_store(root).classes() == {"modified"}
