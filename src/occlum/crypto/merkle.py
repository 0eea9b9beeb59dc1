"""Block Merkle trees over file contents: the integrity recipe of the read-only image.

Owns how a byte string is cut into blocks and hashed into one root, and how one block is
checked against that root.  Everything is SHA-256 from ``hashlib`` (no ``cryptography``):

- a file is cut into blocks of :data:`BLOCK_SIZE` bytes; the last block is zero-padded to a
  full block, so every byte a file occupies in an image (padding included) is covered;
- ``leaf(i) = H(0x00 || u64le(i) || block_i)``: the block index is bound into the leaf, so a
  block moved to another position (or repeated at the end) never hashes the same;
- ``node = H(0x01 || left || right)``; a level with an odd count *promotes* its last node
  unchanged to the next level (no self-pairing, so no duplicate-last-leaf ambiguity);
- the root of an empty file is :data:`EMPTY_ROOT` ``= H(0x02)``, a tag no other node uses.

Two ways to check data are offered.  The image file system uses the cheap one: the image
stores each file's leaf hashes in a table, :func:`root_of_leaves` recomputes the root from them
(compared with the measured root) and each block is then compared with its own leaf, which
names the exact block that fails.  :class:`MerkleTree` keeps every level, for callers that
want to check one block alone with an audit path (:meth:`MerkleTree.proof`,
:func:`verify_block`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "BLOCK_SIZE",
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MerkleTree",
    "block_count",
    "leaf_hash",
    "leaves_of",
    "node_hash",
    "root_of_leaves",
    "tree_of",
    "verify_block",
]

BLOCK_SIZE = 4096
HASH_SIZE = 32

_sha256 = hashlib.sha256
_LEAF_TAG = b"\x00"
_NODE_TAG = b"\x01"
EMPTY_ROOT = _sha256(b"\x02").digest()


def block_count(size: int) -> int:
    """How many blocks a file of ``size`` bytes occupies (0 for an empty file)."""
    return (size + BLOCK_SIZE - 1) // BLOCK_SIZE


def leaf_hash(index: int, block: bytes | bytearray | memoryview) -> bytes:
    """The leaf of block ``index``; a short (last) block is hashed as if zero-padded."""
    h = _sha256(_LEAF_TAG + index.to_bytes(8, "little"))
    h.update(block)
    short = BLOCK_SIZE - len(block)
    if short:
        h.update(bytes(short))
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(_NODE_TAG + left + right).digest()


def leaves_of(data: bytes | bytearray | memoryview, first_index: int = 0) -> list[bytes]:
    """Leaf hashes of every block of ``data``; blocks are numbered from ``first_index``.

    ``data`` must start on a block boundary of the file; only its last block may be short.
    Builders stream a file through this one chunk (a multiple of the block size) at a time.
    """
    mv = memoryview(data)
    n = len(mv)
    out: list[bytes] = []
    append = out.append
    # the hot loop of a build: one hashlib call chain per 4 KiB, no padding except at the end
    full_end = n - n % BLOCK_SIZE
    i = first_index
    for off in range(0, full_end, BLOCK_SIZE):
        h = _sha256(_LEAF_TAG + i.to_bytes(8, "little"))
        h.update(mv[off : off + BLOCK_SIZE])
        append(h.digest())
        i += 1
    if full_end != n:
        append(leaf_hash(i, mv[full_end:]))
    return out


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    nxt = [
        _sha256(_NODE_TAG + level[k] + level[k + 1]).digest() for k in range(0, len(level) - 1, 2)
    ]
    if len(level) % 2:
        nxt.append(level[-1])  # the odd node is promoted unchanged
    return nxt


def root_of_leaves(leaves: Sequence[bytes]) -> bytes:
    """The Merkle root over ``leaves`` (:data:`EMPTY_ROOT` for none)."""
    if not leaves:
        return EMPTY_ROOT
    level: Sequence[bytes] = leaves
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


@dataclass(slots=True, frozen=True)
class MerkleTree:
    """Every level of a tree, leaves first, root last (``levels`` is empty for no data)."""

    levels: tuple[tuple[bytes, ...], ...]

    @property
    def leaf_count(self) -> int:
        return len(self.levels[0]) if self.levels else 0

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.levels else EMPTY_ROOT

    def proof(self, index: int) -> list[bytes]:
        """The audit path of block ``index``: one sibling per level that has one.

        Levels where the node was promoted (no sibling) contribute nothing;
        :func:`verify_block` finds them again from the leaf count.
        """
        if not 0 <= index < self.leaf_count:
            raise IndexError(f"block {index} of {self.leaf_count}")
        path: list[bytes] = []
        for level in self.levels[:-1]:
            sib = index ^ 1
            if sib < len(level):
                path.append(level[sib])
            index //= 2
        return path


def tree_of(data: bytes | bytearray | memoryview) -> MerkleTree:
    """The whole tree of ``data`` (for small files and tests; builders stream leaves)."""
    level = leaves_of(data)
    if not level:
        return MerkleTree(())
    levels = [tuple(level)]
    while len(level) > 1:
        level = _next_level(level)
        levels.append(tuple(level))
    return MerkleTree(tuple(levels))


def verify_block(
    root: bytes,
    index: int,
    leaf_count: int,
    block: bytes | bytearray | memoryview,
    proof: Sequence[bytes],
) -> bool:
    """True if ``block`` is block ``index`` of the ``leaf_count``-block file whose root is ``root``."""
    if not 0 <= index < leaf_count:
        return False
    cur = leaf_hash(index, block)
    width = leaf_count
    used = 0
    while width > 1:
        sib = index ^ 1
        if sib < width:
            if used == len(proof):
                return False
            s = proof[used]
            used += 1
            cur = node_hash(cur, s) if index % 2 == 0 else node_hash(s, cur)
        index //= 2
        width = (width + 1) // 2
    return used == len(proof) and hmac.compare_digest(cur, root)
