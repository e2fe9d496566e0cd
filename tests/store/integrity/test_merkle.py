"""RFC 6962 tree hashing and proofs: published known answers, and every corrupted proof
rejected (after transparency-dev/merkle's testdata: modified-proof, wrong index and size,
preceding and trailing garbage, truncated and extended proofs)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitrail.store.integrity import merkle

# The 8 leaves of RFC 6962's tests and the roots of their prefixes (trust.md; the same in
# transparency-dev/merkle and certificate-transparency).
LEAVES = [bytes.fromhex(x) for x in ("", "00", "10", "2021", "3031", "40414243",
                                     "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
HASHES = [merkle.leaf_hash(x) for x in LEAVES]


def b64(s: str) -> bytes:
    return base64.b64decode(s)


# transparency-dev/merkle testdata/inclusion/{2,4}/happy-path.json
INCLUSION = [
    {"index": 5, "size": 8, "root": "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
     "leaf": "QnGia+DYqE8L1UyMMC58s6O10fpngKQLzOKHNHfatlg=",
     "proof": ["vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
               "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
               "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="]},
    {"index": 1, "size": 5, "root": "Tju7H3tHjc/nH7YxYxUZo7yhLJrvyhYSv85ME6hiZNQ=",
     "leaf": "lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
     "proof": ["bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
               "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
               "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms="]},
]
# testdata/consistency/{1,2,4}/happy-path.json
CONSISTENCY = [
    {"size1": 1, "size2": 8, "root1": "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
     "root2": "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
     "proof": ["lqKW0iTyhcZ77pPDD4owkVfw2qNdxbh+QQt4YwoJz8c=",
               "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
               "a0eq8p7jwq+a+Im8H7klTavTEXfxYjLdaqsDXKOb9uQ="]},
    {"size1": 6, "size2": 8, "root1": "duZ9rbzfHhDht03cYIq9L5jfsW+851J3tSMqEn8gh+8=",
     "root2": "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",
     "proof": ["DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
               "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
               "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="]},
    {"size1": 6, "size2": 7, "root1": "duZ9rbzfHhDht03cYIq9L5jfsW+851J3tSMqEn8gh+8=",
     "root2": "3bib5AOAnjJXUNPSY814kpwpQreUKjS3fhIslZSnTIw=",
     "proof": ["DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
               "sIaT7C5yFZcTBkHoIR5+7cy0wmQTlj7ubB4u0W/7Gl8=",
               "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc="]},
]


def test_tree_hashes_match_the_rfc_6962_known_answers():
    assert merkle.root([]) == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    for n, want in enumerate(ROOTS, start=1):
        assert merkle.root(HASHES[:n]).hex() == want
        f = merkle.Frontier()
        for h in HASHES[:n]:
            f.append(h)
        assert f.root().hex() == want and f.size == n


@pytest.mark.parametrize("case", INCLUSION, ids=lambda c: f"{c['index']}of{c['size']}")
def test_published_inclusion_proofs_verify_and_are_what_we_generate(case):
    proof = [b64(p) for p in case["proof"]]
    leaf, root = b64(case["leaf"]), b64(case["root"])
    assert leaf == HASHES[case["index"]]
    assert merkle.inclusion_proof(HASHES[:case["size"]], case["index"]) == proof
    assert merkle.verify_inclusion(leaf, case["index"], case["size"], proof, root)


@pytest.mark.parametrize("case", CONSISTENCY, ids=lambda c: f"{c['size1']}to{c['size2']}")
def test_published_consistency_proofs_verify_and_are_what_we_generate(case):
    proof = [b64(p) for p in case["proof"]]
    r1, r2 = b64(case["root1"]), b64(case["root2"])
    assert merkle.consistency_proof(HASHES[:case["size2"]], case["size1"]) == proof
    assert merkle.verify_consistency(case["size1"], case["size2"], proof, r1, r2)


def _flips(proof: list[bytes]):
    for i, p in enumerate(proof):
        for bit in range(len(p) * 8):
            q = bytearray(p)
            q[bit // 8] ^= 1 << (bit % 8)
            yield f"bit {bit} of element {i}", [*proof[:i], bytes(q), *proof[i + 1:]]


def _shapes(proof: list[bytes], good: bytes):
    yield "empty", []
    yield "truncated", proof[:-1]
    yield "extended", [*proof, good]
    yield "preceding garbage", [b"\x00" * 32, *proof]
    yield "trailing garbage", [*proof, b"\xff" * 32]
    yield "element repeated", [proof[0], *proof]
    yield "short element", [proof[0][:31], *proof[1:]]
    yield "long element", [proof[0] + b"\x00", *proof[1:]]
    if len(proof) > 1:
        yield "swapped elements", [proof[1], proof[0], *proof[2:]]


@pytest.mark.parametrize("case", INCLUSION, ids=lambda c: f"{c['index']}of{c['size']}")
def test_every_corrupted_inclusion_proof_is_rejected(case):
    proof = [b64(p) for p in case["proof"]]
    leaf, root = b64(case["leaf"]), b64(case["root"])
    i, n = case["index"], case["size"]
    bad = list(_flips(proof)) + list(_shapes(proof, leaf))
    assert len(bad) > 3 * 256
    for what, p in bad:
        assert not merkle.verify_inclusion(leaf, i, n, p, root), what
    # (A size one more or less can give the same path: a proof binds a size only through
    # the signed checkpoint's (size, root) pair; transparency-dev tests *2 and /2 too.)
    for what, (j, m) in {"index+1": (i + 1, n), "index-1": (i - 1, n), "index=size": (n, n),
                         "size*2": (i, 2 * n),
                         "size/2": (i, n // 2), "index xor 2": (i ^ 2, n),
                         "negative index": (-1, n)}.items():
        assert not merkle.verify_inclusion(leaf, j, m, proof, root), what
    other = bytearray(leaf)
    other[0] ^= 1
    assert not merkle.verify_inclusion(bytes(other), i, n, proof, root), "wrong leaf"
    assert not merkle.verify_inclusion(leaf, i, n, proof, merkle.EMPTY_ROOT), "wrong root"
    assert not merkle.verify_inclusion(leaf, i, n, proof, root[:31]), "short root"


@pytest.mark.parametrize("case", CONSISTENCY, ids=lambda c: f"{c['size1']}to{c['size2']}")
def test_every_corrupted_consistency_proof_is_rejected(case):
    proof = [b64(p) for p in case["proof"]]
    r1, r2 = b64(case["root1"]), b64(case["root2"])
    s1, s2 = case["size1"], case["size2"]
    for what, p in list(_flips(proof)) + list(_shapes(proof, r1)):
        assert not merkle.verify_consistency(s1, s2, p, r1, r2), what
    for what, (a, b) in {"size1+1": (s1 + 1, s2), "size1-1": (s1 - 1, s2),
                         "size1=0": (0, s2), "size1>size2": (s2 + 1, s2),
                         "size2*2": (s1, 2 * s2), "size1 xor 2": (s1 ^ 2, s2)}.items():
        assert not merkle.verify_consistency(a, b, proof, r1, r2), what
    assert not merkle.verify_consistency(s1, s2, proof, r2, r1), "swapped roots"
    assert not merkle.verify_consistency(s1, s2, proof, merkle.EMPTY_ROOT, r2), "wrong root1"
    assert not merkle.verify_consistency(s1, s2, proof, r1, merkle.EMPTY_ROOT), "wrong root2"
    # size1 == size2: only an empty proof between equal roots.
    assert merkle.verify_consistency(s2, s2, [], r2, r2)
    assert not merkle.verify_consistency(s2, s2, proof, r2, r2)
    assert not merkle.verify_consistency(s2, s2, [], r1, r2)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 70), data=st.data())
def test_generated_proofs_verify_and_a_flipped_bit_never_does(n, data):
    hashes = [merkle.leaf_hash(i.to_bytes(2, "big")) for i in range(n)]
    root = merkle.root(hashes)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(hashes, i)
    assert merkle.verify_inclusion(hashes[i], i, n, proof, root)
    size1 = data.draw(st.integers(1, n))
    cproof = merkle.consistency_proof(hashes, size1)
    r1 = merkle.root(hashes[:size1])
    assert merkle.verify_consistency(size1, n, cproof, r1, root)
    if proof:
        k = data.draw(st.integers(0, len(proof) * 256 - 1))
        p = [bytearray(x) for x in proof]
        p[k // 256][k % 256 // 8] ^= 1 << (k % 8)
        assert not merkle.verify_inclusion(hashes[i], i, n, [bytes(x) for x in p], root)
    if cproof:
        k = data.draw(st.integers(0, len(cproof) * 256 - 1))
        p = [bytearray(x) for x in cproof]
        p[k // 256][k % 256 // 8] ^= 1 << (k % 8)
        assert not merkle.verify_consistency(size1, n, [bytes(x) for x in p], r1, root)
