"""Batch proofs read off one built tree are the RFC 6962 proofs merkle.py computes."""

from __future__ import annotations

import hashlib

import pytest

from aitrail.store.bundle.proofs import Tree
from aitrail.store.integrity import merkle


@pytest.mark.parametrize("n", [*range(1, 34), 64, 65, 100])
def test_tree_proofs_equal_merkle_inclusion_proofs_and_verify(n: int) -> None:
    leaves = [merkle.leaf_hash(hashlib.sha256(bytes([i % 256, i // 256])).digest())
              for i in range(n)]
    tree = Tree(leaves)
    assert tree.root == merkle.root(leaves)
    for i in range(n):
        proof = tree.proof(i)
        assert proof == merkle.inclusion_proof(leaves, i)
        assert merkle.verify_inclusion(leaves[i], i, n, proof, tree.root)


def test_tree_refuses_an_index_outside_it() -> None:
    tree = Tree([merkle.leaf_hash(b"a")])
    with pytest.raises(ValueError):
        tree.proof(1)
