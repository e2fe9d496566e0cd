"""Many RFC 6962 inclusion proofs over one tree at once.

`merkle.inclusion_proof` recomputes subtree roots for each proof: O(n) a proof, so 10,000
spans of a 100,000-row file would cost 10^9 hashes. Here the tree is built once, level by
level (an odd last node moves up unchanged: the same tree as the RFC's split at the largest
power of two, see merkle.root), and each proof is read off it in O(log n).
tests/store/bundle/test_proofs.py holds both equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


class Tree:
    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("no proofs in an empty tree")
        sha = hashlib.sha256
        self.levels: list[list[bytes]] = [list(leaves)]
        level = self.levels[0]
        while len(level) > 1:
            nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest()
                   for i in range(0, len(level) - 1, 2)]
            if len(level) & 1:
                nxt.append(level[-1])
            self.levels.append(nxt)
            level = nxt

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, index: int) -> list[bytes]:
        """PATH(index, D[n]) (RFC 9162 2.1.3.1), leaf to root."""
        if not 0 <= index < len(self.levels[0]):
            raise ValueError(f"index {index} outside a tree of {len(self.levels[0])} leaves")
        out = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):  # a node without a sibling moves up: no element
                out.append(level[sibling])
            index >>= 1
        return out
