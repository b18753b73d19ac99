"""RFC 9162 §2.1 Merkle tree algorithms (the hashing of RFC 6962), with no database.

Leaves and nodes are hashed with different prefixes (0x00 and 0x01) so a leaf can never be
passed off as a node. Proofs are built from perfect subtrees: node (level, idx) is the root of
leaves [idx·2^level, (idx+1)·2^level), the only kind of node the log stores (service/rights/
transparency.py), because such a node never changes once its last leaf exists. Every subtree an
RFC proof needs, MTH(D[start:end]), is a run of such nodes folded right to left
(`perfect_nodes`, `fold`), so a caller can fetch all of a proof's nodes at once and then
build it (`inclusion_ranges` / `consistency_ranges` name the subtrees, in proof order).

Verification is the iterative algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2, the same ones the
citizen page runs in the browser.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()

Subtree = Callable[[int, int], bytes]  # (start, end) -> MTH of leaves [start, end)


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(size: int) -> int:
    """k, the largest power of two smaller than `size` (size ≥ 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def perfect_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees (level, idx), left to right, whose fold is MTH(D[start:end]).

    MTH splits at the largest power of two below the size, so the range breaks into perfect
    subtrees of the sizes of its binary digits, largest first. They are aligned (stored) nodes
    when `start` is a multiple of a power of two ≥ end − start, as every range of an RFC proof
    and every tree prefix [0, n) is; any other range raises ValueError."""
    if not 0 <= start <= end:
        raise ValueError(f"bad range [{start}, {end})")
    nodes, at, left = [], start, end - start
    while left:
        level = left.bit_length() - 1
        if at % (1 << level):
            raise ValueError(f"range [{start}, {end}) is not made of stored subtrees")
        nodes.append((level, at >> level))
        at += 1 << level
        left -= 1 << level
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its perfect subtrees' hashes, left to right (`perfect_nodes`)."""
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


def subtree_from(nodes: Mapping[tuple[int, int], bytes]) -> Subtree:
    """A `subtree(start, end)` reading perfect nodes from `nodes` ((level, idx) -> hash)."""
    return lambda start, end: fold([nodes[key] for key in perfect_nodes(start, end)])


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the given leaf hashes (RFC 9162 §2.1.1), iteratively."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])  # an odd node is promoted: same as MTH's split
        level = paired
    return level[0]


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees [start, end) of PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    ranges, lo, hi = [], 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    return ranges[::-1]


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The subtrees of PROOF(first, D[second]) (RFC 9162 §2.1.4.1), in proof order; empty when
    first is 0 or equals second (nothing to prove)."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to {second}")
    if first in (0, second):
        return []
    ranges, lo, hi, m, whole = [], 0, second, first, True
    while True:
        if hi - lo == m:
            if not whole:
                ranges.append((lo, hi))
            break
        k = split_point(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    return ranges[::-1]


def inclusion_proof(index: int, size: int, subtree: Subtree) -> list[bytes]:
    return [subtree(start, end) for start, end in inclusion_ranges(index, size)]


def consistency_proof(first: int, second: int, subtree: Subtree) -> list[bytes]:
    return [subtree(start, end) for start, end in consistency_ranges(first, second)]


def nodes_needed(ranges: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Every stored node (level, idx) that the given subtrees are folded from."""
    return {node for start, end in ranges for node in perfect_nodes(start, end)}


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes],
                     root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` take `leaf_hash` at `index` to `root` of `size`?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of size `second` an extension of the one of `first`?"""
    if not 0 <= first <= second:
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the old root is a node of the new
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


class CompactRange:
    """The right edge of a tree as leaves are appended: the perfect subtrees of [0, size),
    largest first. `append` returns every node it completes (the leaf itself included), which
    is what a sequencer writes; nothing it returns ever changes later."""

    def __init__(self, size: int = 0, frontier: Sequence[bytes] = ()) -> None:
        self.size = size
        self._levels = [level for level, _ in perfect_nodes(0, size)]
        if len(frontier) != len(self._levels):
            raise ValueError(f"a tree of size {size} has {len(self._levels)} frontier nodes")
        self._hashes = list(frontier)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        index = self.size
        made = [(0, index, leaf)]
        levels, hashes = self._levels, self._hashes
        level, h = 0, leaf
        while levels and levels[-1] == level:
            levels.pop()
            h = node_hash(hashes.pop(), h)
            level += 1
            made.append((level, index >> level, h))
        levels.append(level)
        hashes.append(h)
        self.size = index + 1
        return made

    def extend(self, leaves: Iterable[bytes]) -> tuple[list[int], list[int], list[bytes]]:
        """`append` for many leaves at once, the nodes made as three columns (level, idx,
        hash): the sequencer's hot loop, kept free of per-node tuples."""
        levels_out, idxs_out, hashes_out = [], [], []
        put_level, put_idx, put_hash = levels_out.append, idxs_out.append, hashes_out.append
        levels, hashes, index = self._levels, self._hashes, self.size
        sha = hashlib.sha256
        for leaf in leaves:
            put_level(0)
            put_idx(index)
            put_hash(leaf)
            level, h = 0, leaf
            while levels and levels[-1] == level:
                levels.pop()
                h = sha(b"\x01" + hashes.pop() + h).digest()
                level += 1
                put_level(level)
                put_idx(index >> level)
                put_hash(h)
            levels.append(level)
            hashes.append(h)
            index += 1
        self.size = index
        return levels_out, idxs_out, hashes_out

    def root(self) -> bytes:
        return fold(self._hashes)
