"""The offline verifier against a tampering matrix: any single change to a bundle is
rejected, also when whoever tampered holds the store's key and re-signs the manifest (the
proofs still bind every row to the signed checkpoint); untouched bundles verify."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aitrail.cli import main
from aitrail.store.bundle.archive import Unreadable, read_bundle
from aitrail.store.bundle.layout import CHECKPOINT, MANIFEST, SIGNATURE, SPANS, signed_message
from aitrail.store.bundle.verify import pinned_fingerprint, verify_bundle, verify_files
from aitrail.store.integrity import keys

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


class Files(dict):
    """A bundle's files; a short repr keeps hypothesis' failure reports readable."""

    def __repr__(self) -> str:
        return f"<bundle files {sorted(self)}>"


@pytest.fixture(scope="module")
def original(all_bundle: Path) -> dict[str, bytes]:
    return Files(read_bundle(all_bundle))


@pytest.fixture(scope="module")
def pin(original: dict[str, bytes]) -> str:
    return keys.parse_checkpoint(original[CHECKPOINT]).fingerprint


@pytest.fixture(scope="module")
def store_signer(samples_copy: Path) -> keys.Signer:
    return keys.Signer(samples_copy)


def resign(files: dict[str, bytes], signer: keys.Signer, manifest: dict | None = None
           ) -> dict[str, bytes]:
    """What a key holder can do: rewrite the manifest (file hashes updated) and sign it."""
    m = manifest if manifest is not None else orjson.loads(files[MANIFEST])
    for name in m["files"]:
        if name in files:
            m["files"][name] = {"sha256": hashlib.sha256(files[name]).hexdigest(),
                                "size": len(files[name])}
    data = orjson.dumps(m, option=orjson.OPT_INDENT_2) + b"\n"
    sig = base64.b64encode(signer.sign(signed_message(data))).decode()
    return {**files, MANIFEST: data,
            SIGNATURE: f"signature {signer.fingerprint} {sig}\n".encode()}


def leaves(obj, path=()):
    """Every (path, value) of scalars and empty lists in a JSON document."""
    if isinstance(obj, dict):
        for k in sorted(obj):
            yield from leaves(obj[k], (*path, k))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from leaves(v, (*path, i))
    else:
        yield path, obj


def changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        if value and value[-1] in "0123456789abcdef":
            return value[:-1] + ("0" if value[-1] != "0" else "1")
        return value + "x"
    if value is None:
        return "x"
    return ["00" * 32]  # an empty list (a proof of a one-row file) gains an element


def set_at(doc, path, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


# Manifest fields the proofs (not only the signature) bind: edits there fail even re-signed.
BOUND = ("rows", "sources", "files", "columns", "key_fingerprint", "origin", "format",
         "row_digest")


def test_untouched_bundles_verify(all_bundle: Path, change_bundle: Path, pin: str) -> None:
    for path in (all_bundle, change_bundle):
        report = verify_bundle(path, pin)
        assert report.ok, report.problems
        assert report.spans > 0 and report.traces > 0 and report.pinned
    assert verify_bundle(change_bundle, pin).traces == 3


def test_a_bundle_with_redacted_spans_verifies_and_carries_their_records(
        original: dict[str, bytes]) -> None:
    table = pq.read_table(pa.BufferReader(original[SPANS]))
    reds = [r for r in table.column("redactions").to_pylist() if r]
    assert reds and all(orjson.loads(r) for r in reds)
    assert verify_files(original).ok


@SETTINGS
@given(data=st.data())
def test_any_flipped_bit_in_any_file_is_rejected(original, pin, data) -> None:
    name = data.draw(st.sampled_from(sorted(original)))
    body = bytearray(original[name])
    at = data.draw(st.integers(0, len(body) - 1))
    body[at] ^= 1 << data.draw(st.integers(0, 7))
    report = verify_files({**original, name: bytes(body)}, pin)
    assert not report.ok


@SETTINGS
@given(data=st.data(), resigned=st.booleans())
def test_any_edited_manifest_field_is_rejected(original, pin, store_signer, data,
                                               resigned) -> None:
    manifest = orjson.loads(original[MANIFEST])
    paths = [p for p, _ in leaves(manifest) if not resigned or p[0] in BOUND]
    path = data.draw(st.sampled_from(paths))
    value = dict(leaves(manifest))[path]
    set_at(manifest, path, changed(value))
    if resigned:
        files = resign(original, store_signer, manifest)
        if path[0] == "files":  # resign() rewrites the hashes: edit the listing instead
            manifest["files"]["extra.txt"] = {"sha256": "0" * 64, "size": 0}
            files = resign(original, store_signer, manifest)
    else:
        files = {**original, MANIFEST: orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
                 + b"\n"}
    report = verify_files(files, pin)
    assert not report.ok, path


@SETTINGS
@given(data=st.data(), what=st.sampled_from(["proof", "index", "digest", "source"]),
       resigned=st.booleans())
def test_a_proof_swapped_between_two_rows_is_rejected(original, pin, store_signer, data,
                                                      what, resigned) -> None:
    manifest = orjson.loads(original[MANIFEST])
    rows = manifest["rows"]["spans"]
    i, j = data.draw(st.lists(st.integers(0, len(rows) - 1), min_size=2, max_size=2,
                              unique=True))
    assume(rows[i][what] != rows[j][what])
    rows[i][what], rows[j][what] = rows[j][what], rows[i][what]
    files = resign(original, store_signer, manifest) if resigned else {
        **original, MANIFEST: orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"}
    report = verify_files(files, pin)
    assert not report.ok
    if resigned:
        assert report.classes() & {"row_proof", "row_digest"}


@SETTINGS
@given(data=st.data())
def test_a_changed_span_is_rejected_even_if_the_key_holder_re_signs_the_manifest(
        original, pin, store_signer, data) -> None:
    table = pq.read_table(pa.BufferReader(original[SPANS]))
    col = data.draw(st.sampled_from(["name", "attributes", "status_message", "input_messages",
                                     "redactions", "service_name", "tenant"]))
    row = data.draw(st.integers(0, table.num_rows - 1))
    values = table.column(col).to_pylist()
    values[row] = (values[row] or "") + data.draw(st.text(min_size=1, max_size=5))
    table = table.set_column(table.schema.get_field_index(col), table.schema.field(col),
                             pa.array(values, pa.string()))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    files = resign({**original, SPANS: buf.getvalue()}, store_signer)
    report = verify_files(files, pin)
    assert report.classes() & {"row_digest", "row_tenant", "otlp_mismatch"}, report.problems


def test_a_checkpoint_re_signed_over_another_root_fails_the_entry_proofs(
        original, pin, store_signer) -> None:
    cp = keys.parse_checkpoint(original[CHECKPOINT])
    name, (size, _root) = sorted(cp.logs.items())[0]
    cp.logs[name] = (size, hashlib.sha256(b"another history").digest())
    cp.signature = store_signer.sign(cp.body())
    report = verify_files(resign({**original, CHECKPOINT: cp.encode()}, store_signer), pin)
    assert report.classes() == {"entry_proof", "row_proof"}


def test_a_wrong_pinned_key_is_rejected(original) -> None:
    other = keys.fingerprint(b"\x01" * 32)
    assert verify_files(original, other).classes() == {"key_mismatch"}


def test_a_bundle_re_signed_by_another_key_is_rejected_when_the_key_is_pinned(
        original, pin, tmp_path) -> None:
    thief = keys.Signer(tmp_path / "thief")
    cp = keys.parse_checkpoint(original[CHECKPOINT])
    forged = keys.Checkpoint(cp.origin, cp.time, thief.public, dict(cp.logs),
                             signer=thief.fingerprint)
    forged.signature = thief.sign(forged.body())
    manifest = orjson.loads(original[MANIFEST])
    manifest["key_fingerprint"] = thief.fingerprint
    files = resign({**original, CHECKPOINT: forged.encode()}, thief, manifest)
    assert verify_files(files, pin).classes() == {"key_mismatch"}
    # Unpinned it is self-consistent: the report names the other key, which is why the
    # README says to pin (docs/bundles.md, "What it cannot tell").
    unpinned = verify_files(files)
    assert unpinned.ok and unpinned.fingerprint == thief.fingerprint != pin


def test_a_missing_or_an_extra_file_is_rejected(original, pin) -> None:
    missing = {k: v for k, v in original.items() if k != "timeline.md"}
    assert verify_files(missing, pin).classes() == {"file_missing"}
    extra = {**original, "notes.txt": b"added later"}
    assert verify_files(extra, pin).classes() == {"file_extra"}


@settings(max_examples=30, deadline=None)
@given(at=st.integers(0, 2**40), bit=st.integers(0, 7))
def test_a_flipped_bit_in_a_tar_gz_bundle_is_rejected(change_bundle, tmp_path_factory, at,
                                                      bit) -> None:
    body = bytearray(change_bundle.read_bytes())
    body[at % len(body)] ^= 1 << bit
    path = tmp_path_factory.mktemp("flip") / "b.tar.gz"
    path.write_bytes(bytes(body))
    try:
        report = verify_bundle(path)
    except Unreadable:
        return
    # A flip in container metadata (the gzip header's flags, mtime or OS byte; a member's
    # mode, mtime or owner in its tar header) changes no file of the evidence: it verifies
    # only if every file is byte for byte the original.
    assert not report.ok or read_bundle(path) == read_bundle(change_bundle)


def test_pinned_key_can_be_given_as_fingerprint_key_file_or_checkpoint(
        samples_copy, original, pin, tmp_path) -> None:
    (tmp_path / "cp").write_bytes(original[CHECKPOINT])
    (tmp_path / "pub.b64").write_bytes(base64.b64encode(
        (samples_copy / "_keys" / "signing.pub").read_bytes()))
    for value in (pin, str(samples_copy / "_keys" / "signing.pub"), str(tmp_path / "cp"),
                  str(tmp_path / "pub.b64")):
        assert pinned_fingerprint(value) == pin
    with pytest.raises(ValueError):
        pinned_fingerprint("ed25519:xyz")


def test_cli_verify_bundle_exit_codes(bundle, pin, capsys, tmp_path) -> None:
    assert main(["verify", str(bundle), "--key", pin]) == 0
    assert "OK: " in capsys.readouterr().out
    assert main(["verify", str(bundle), "--key", keys.fingerprint(b"\x02" * 32),
                 "--format", "json"]) == 1
    out = orjson.loads(capsys.readouterr().out)
    assert not out["ok"] and out["problems"][0]["class"] == "key_mismatch"
    (bundle / "timeline.md").write_text("# nothing happened\n")
    assert main(["verify", str(bundle)]) == 1
    assert "file_modified" in capsys.readouterr().out
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b not really")
    assert main(["verify", str(junk)]) == 2
    assert main(["verify", str(bundle), "--key", "ed25519:nothex"]) == 2


def test_offline_verifier_runs_without_duckdb(all_bundle: Path, pin: str,
                                              tmp_path: Path) -> None:
    """`aitrail verify BUNDLE` in a fresh interpreter where importing duckdb fails, and away
    from any store."""
    copy = tmp_path / "elsewhere" / "bundle"
    shutil.copytree(all_bundle, copy)
    code = ("import sys; sys.modules['duckdb'] = None\n"
            "from aitrail.cli import main\n"
            f"rc = main(['verify', {str(copy)!r}, '--key', {pin!r}])\n"
            "assert 'duckdb' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "sys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                       "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: " in done.stdout


def test_the_by_hand_check_in_the_docs_proves_a_span_with_hashlib_alone(bundle, monkeypatch):
    doc = (Path(__file__).resolve().parents[3] / "docs" / "bundles.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    cp = keys.parse_checkpoint((bundle / CHECKPOINT).read_bytes())
    size, root = next(iter(cp.logs.values()))
    monkeypatch.chdir(bundle)
    scope = {"SIZE": size}
    exec(compile(code, "docs/bundles.md", "exec"), scope)
    assert scope["log_root"] == root
