"""The Merkle algorithms agree with RFC 6962 §2.1 as written: a reference implementation here,
straight from the RFC's recursive definitions (MTH, PATH, PROOF/SUBPROOF) and sharing no code
with service/rights/merkle.py, checks the production proofs; the production verifiers accept
the reference proofs and reject altered ones."""

from __future__ import annotations

import hashlib

from hypothesis import assume, given
from hypothesis import strategies as st

from service.rights import merkle

# --- RFC 6962 §2.1, transcribed ------------------------------------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + d[0])
    k = 1
    while k * 2 < n:  # the largest power of two smaller than n
        k *= 2
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


# --- helpers --------------------------------------------------------------------------------


def _data(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def _stored(d: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect node of the tree over d, computed with the reference MTH."""
    nodes, level = {}, 0
    while (1 << level) <= len(d):
        width = 1 << level
        for idx in range(len(d) // width):
            nodes[(level, idx)] = ref_mth(d[idx * width:(idx + 1) * width])
        level += 1
    return nodes


def _altered(proof: list[bytes], which: int) -> list[bytes]:
    changed = list(proof)
    changed[which] = bytes([changed[which][0] ^ 1]) + changed[which][1:]
    return changed


SIZES = st.one_of(st.integers(0, 70), st.sampled_from([127, 128, 129, 255, 256, 1000, 1025]))


@given(SIZES)
def test_roots_match_the_rfc(n):
    d = _data(n)
    assert merkle.root_of([merkle.leaf_hash(x) for x in d]) == ref_mth(d)
    subtree = merkle.subtree_from(_stored(d))
    assert subtree(0, n) == ref_mth(d)


@given(SIZES, st.data())
def test_inclusion_proofs_match_the_rfc_and_verify(n, data):
    assume(n > 0)
    d = _data(n)
    m = data.draw(st.integers(0, n - 1))
    reference = ref_path(m, d)
    subtree = merkle.subtree_from(_stored(d))
    assert merkle.inclusion_proof(m, n, subtree) == reference
    root, leaf = ref_mth(d), merkle.leaf_hash(d[m])
    assert merkle.verify_inclusion(leaf, m, n, reference, root)
    if reference:
        assert not merkle.verify_inclusion(leaf, m, n, _altered(reference, data.draw(
            st.integers(0, len(reference) - 1))), root)
        assert not merkle.verify_inclusion(leaf, m, n, reference[:-1], root)
        assert not merkle.verify_inclusion(leaf, m, n, reference + [root], root)
    assert not merkle.verify_inclusion(_sha(b"other"), m, n, reference, root)
    assert not merkle.verify_inclusion(leaf, m, n, reference, _sha(b"other root"))
    if n > 1:  # the same proof does not place the leaf anywhere else
        other = data.draw(st.integers(0, n - 1).filter(lambda i: i != m))
        assert not merkle.verify_inclusion(leaf, other, n, reference, root)
    assert not merkle.verify_inclusion(leaf, n, n, reference, root)


@given(SIZES, st.data())
def test_consistency_proofs_match_the_rfc_and_verify(n, data):
    assume(n > 0)
    d = _data(n)
    m = data.draw(st.integers(1, n))
    reference = ref_proof(m, d) if m < n else []
    subtree = merkle.subtree_from(_stored(d))
    assert merkle.consistency_proof(m, n, subtree) == reference
    first_root, second_root = ref_mth(d[:m]), ref_mth(d)
    assert merkle.verify_consistency(m, n, first_root, second_root, reference)
    if reference:
        assert not merkle.verify_consistency(m, n, first_root, second_root, _altered(
            reference, data.draw(st.integers(0, len(reference) - 1))))
        assert not merkle.verify_consistency(m, n, first_root, second_root, reference[:-1])
    if m < n:  # a different old tree (one leaf rewritten) is not extended by this one
        forged = d[:m - 1] + [b"rewritten"]
        assert not merkle.verify_consistency(m, n, ref_mth(forged), second_root, reference)
        assert not merkle.verify_consistency(m, n, first_root, _sha(b"x"), reference)


def test_edge_cases_of_consistency():
    d = _data(5)
    assert merkle.verify_consistency(0, 5, ref_mth([]), ref_mth(d), [])
    assert not merkle.verify_consistency(0, 5, _sha(b"x"), ref_mth(d), [])
    assert merkle.verify_consistency(5, 5, ref_mth(d), ref_mth(d), [])
    assert not merkle.verify_consistency(5, 5, ref_mth(d), ref_mth(d), [ref_mth(d)])
    assert not merkle.verify_consistency(6, 5, ref_mth(d), ref_mth(d), [])
    assert merkle.consistency_ranges(0, 5) == [] == merkle.consistency_ranges(5, 5)


@given(st.integers(0, 300), st.integers(0, 300))
def test_the_compact_range_writes_every_perfect_node_once(start, more):
    """Resuming from any size's frontier, appending leaves completes exactly the perfect nodes
    of the bigger tree that the smaller did not have, with the reference's hashes."""
    d = _data(start + more)
    nodes = _stored(d)
    frontier = [nodes[key] for key in merkle.perfect_nodes(0, start)]
    compact = merkle.CompactRange(start, frontier)
    made = {}
    for x in d[start:]:
        for level, idx, h in compact.append(merkle.leaf_hash(x)):
            assert (level, idx) not in made
            made[(level, idx)] = h
    before = set(_stored(d[:start]))
    assert made == {key: h for key, h in nodes.items() if key not in before}
    assert compact.root() == ref_mth(d) and compact.size == start + more


def test_ranges_not_made_of_stored_nodes_are_refused():
    assert merkle.perfect_nodes(8, 13) == [(2, 2), (0, 12)]
    for bad in ((3, 7), (-1, 2), (5, 4)):
        try:
            merkle.perfect_nodes(*bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")


@given(st.integers(0, 200), st.integers(0, 200))
def test_extend_makes_what_append_makes(start, more):
    leaves = [merkle.leaf_hash(x) for x in _data(start + more)]
    one, many = merkle.CompactRange(), merkle.CompactRange()
    for leaf in leaves[:start]:
        one.append(leaf)
        many.append(leaf)
    made = [node for leaf in leaves[start:] for node in one.append(leaf)]
    assert list(zip(*many.extend(leaves[start:]), strict=True)) == made
    assert many.root() == one.root() == ref_mth(_data(start + more))


def test_every_size_up_to_70_every_index_and_every_older_size():
    """Exhaustively, beside the drawn cases: each proof equals the RFC's and verifies."""
    for n in range(0, 71):
        d = _data(n)
        nodes = _stored(d)
        subtree, root = merkle.subtree_from(nodes), ref_mth(d)
        assert merkle.root_of([merkle.leaf_hash(x) for x in d]) == root
        for m in range(n):
            proof = merkle.inclusion_proof(m, n, subtree)
            assert proof == ref_path(m, d)
            assert merkle.verify_inclusion(merkle.leaf_hash(d[m]), m, n, proof, root)
        for m in range(1, n):
            proof = merkle.consistency_proof(m, n, subtree)
            assert proof == ref_proof(m, d)
            assert merkle.verify_consistency(m, n, ref_mth(d[:m]), root, proof)
