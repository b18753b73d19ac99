"""Signed tree heads, proofs from stored nodes, and verification of the whole audit log.

A tree head says "the log's first `tree_size` entries have this Merkle root", signed with the
audit key (Ed25519, held outside the database: service/base/keys.py). A citizen checks their
entry with an inclusion proof against the latest head; anyone who kept an older head checks
that the newer one extends it with a consistency proof (RFC 9162 §2.1). Proofs are folded from
the perfect subtrees in `audit_tree`, all fetched in one query.

`verify_log` checks everything from the data: each head's signature, each entry's leaf hash
from its own row (the person commitment from its `person_key`), dense leaf indexes, every entry
either a leaf or still queued, the root at every head's size (recomputed in one
streaming pass, which is also the consistency of consecutive heads) and every stored node.
Someone with write access to the database who rewrites an entry, its leaf hash and every node
is still caught: the signed roots no longer match, and they cannot sign new ones.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, func, literal, select, text, tuple_, union_all

from service.rights import merkle
from service.rights.audit import entry_hash
from service.store.tables import (
    audit_entries,
    audit_leaves,
    audit_tree,
    audit_tree_heads,
    audit_unsealed,
)

HEAD_LABEL = "osmanthus-audit-tree-head:v1"


@dataclass(frozen=True)
class TreeHead:
    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        """What the key signs; the browser and outside auditors rebuild exactly this."""
        return (f"{HEAD_LABEL}\n{self.tree_size}\n{self.root_hash.hex()}\n"
                f"{self.timestamp_ms}\n").encode()

    def as_json(self) -> dict:
        return {"tree_size": self.tree_size, "root_hash": self.root_hash.hex(),
                "timestamp": self.timestamp_ms, "key_id": self.key_id,
                "signature": base64.urlsafe_b64encode(self.signature).rstrip(b"=").decode()}

    def verifies(self, public_keys: Mapping[str, object]) -> bool:
        """Is the signature good under the published key of `key_id`?"""
        from cryptography.exceptions import InvalidSignature

        public = public_keys.get(self.key_id)
        if public is None:
            return False
        try:
            public.verify(self.signature, self.message())
        except InvalidSignature:
            return False
        return True


def signed_head(signer, tree_size: int, root_hash: bytes, timestamp_ms: int) -> TreeHead:
    """A head signed by `signer` (anything with `key_id` and `sign(bytes) -> bytes`, such as
    service.base.keys.AuditKeys)."""
    unsigned = TreeHead(tree_size, root_hash, timestamp_ms, signer.key_id, b"")
    return TreeHead(tree_size, root_hash, timestamp_ms, signer.key_id,
                    signer.sign(unsigned.message()))


def _head(row) -> TreeHead | None:
    if row is None:
        return None
    return TreeHead(int(row.tree_size), bytes(row.root_hash), int(row.timestamp), row.key_id,
                    bytes(row.signature))


def latest_head(engine: Engine) -> TreeHead | None:
    with engine.connect() as connection:
        return _head(connection.execute(select(audit_tree_heads).order_by(
            audit_tree_heads.c.tree_size.desc()).limit(1)).first())


def head_of_size(engine: Engine, size: int) -> TreeHead | None:
    with engine.connect() as connection:
        return _head(connection.execute(select(audit_tree_heads).where(
            audit_tree_heads.c.tree_size == size)).first())


def fetch_nodes(connection, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored nodes (level, idx) -> hash among `wanted`, in one query. Level 0 is not in
    `audit_tree`: a leaf's hash is its entry's `leaf_hash` (through `audit_leaves`), stored
    once."""
    if not wanted:
        return {}
    t, leaves, e = audit_tree, audit_leaves, audit_entries
    leaf_idxs = sorted(idx for level, idx in wanted if level == 0)
    inner = sorted(key for key in wanted if key[0] > 0)
    leaf_query = (select(literal(0), leaves.c.leaf_index, e.c.leaf_hash)
                  .select_from(leaves.join(e, e.c.id == leaves.c.entry_id)))
    if connection.dialect.name == "postgresql":
        levels, idxs = zip(*inner, strict=True) if inner else ((), ())
        rows = connection.execute(text(
            "SELECT t.level, t.idx, t.hash FROM audit_tree t JOIN unnest(CAST(:levels AS "
            "smallint[]), CAST(:idxs AS bigint[])) AS w(level, idx) "
            "ON t.level = w.level AND t.idx = w.idx UNION ALL "
            "SELECT 0, l.leaf_index, e.leaf_hash FROM audit_leaves l JOIN audit_entries e "
            "ON e.id = l.entry_id WHERE l.leaf_index = ANY(CAST(:leaves AS bigint[]))"),
            {"levels": list(levels), "idxs": list(idxs), "leaves": leaf_idxs})
    else:
        rows = connection.execute(union_all(
            select(t.c.level, t.c.idx, t.c.hash).where(tuple_(t.c.level, t.c.idx).in_(inner)),
            leaf_query.where(leaves.c.leaf_index.in_(leaf_idxs))))
    return {(row[0], row[1]): bytes(row[2]) for row in rows}


def _proofs(engine: Engine, ranges: dict) -> dict:
    wanted = merkle.nodes_needed(r for found in ranges.values() for r in found)
    with engine.connect() as connection:
        nodes = fetch_nodes(connection, wanted)
    missing = wanted - nodes.keys()
    if missing:
        raise LookupError(f"the tree lacks {len(missing)} node(s), e.g. {min(missing)}: "
                          "run `osmanthus audit verify`")
    subtree = merkle.subtree_from(nodes)
    return {key: [subtree(start, end) for start, end in found]
            for key, found in ranges.items()}


def inclusion_proofs(engine: Engine, leaf_indexes: list[int],
                     tree_size: int) -> dict[int, list[bytes]]:
    """Each leaf's inclusion proof in the tree of `tree_size` (every node in one query).
    ValueError for a leaf not in that tree."""
    return _proofs(engine, {index: merkle.inclusion_ranges(index, tree_size)
                            for index in set(leaf_indexes)})


def consistency_proof(engine: Engine, first: int, second: int) -> list[bytes]:
    """The proof that the tree of `second` extends the one of `first` (ValueError when
    first > second)."""
    return _proofs(engine, {0: merkle.consistency_ranges(first, second)})[0]


@dataclass
class Verdict:
    """What `verify_log` found: counts, and the first problem (empty when none)."""

    entries: int = 0  # sealed entries checked
    heads: int = 0
    unsealed: int = 0  # appended, not yet in the tree: reported, not a problem
    problem: str = ""
    leaf_index: int | None = None  # where, when the problem is one entry's

    @property
    def ok(self) -> bool:
        return not self.problem


def verify_log(engine: Engine, public_keys: Mapping[str, object],
               batch: int = 10_000) -> Verdict:
    """Check the whole log from its data (see the module's doc); the first problem wins."""
    verdict = Verdict()
    with engine.connect() as connection:
        heads = [_head(row) for row in connection.execute(
            select(audit_tree_heads).order_by(audit_tree_heads.c.tree_size))]
        verdict.heads = len(heads)
        for head in heads:
            if not head.verifies(public_keys):
                verdict.problem = (f"the tree head of size {head.tree_size} has a bad signature"
                                   f" (key {head.key_id!r})")
                return verdict
        for earlier, later in zip(heads, heads[1:], strict=False):
            if later.timestamp_ms < earlier.timestamp_ms:
                verdict.problem = f"the tree head of size {later.tree_size} goes back in time"
                return verdict
        verdict.unsealed = connection.execute(select(func.count()).select_from(
            audit_unsealed)).scalar_one()
        _check_tree(connection, heads, verdict, batch)
        if verdict.ok:
            _check_queue(connection, verdict)
    return verdict


def _check_queue(connection, verdict: Verdict) -> None:
    """Every entry is a leaf or waits in the queue, never neither: an entry taken off the
    queue without being sealed would never be in any signed head."""
    count = lambda table: connection.execute(  # noqa: E731
        select(func.count()).select_from(table)).scalar_one()
    lost = count(audit_entries) - verdict.entries - verdict.unsealed
    if lost > 0:
        verdict.problem = (f"{lost} entr{'y is' if lost == 1 else 'ies are'} neither sealed "
                           "nor waiting to be (taken off the queue unsealed)")
    elif lost < 0:
        verdict.problem = (f"the queue of unsealed entries holds {-lost} that are sealed "
                           "already or not in the log")


def _check_tree(connection, heads: list[TreeHead], verdict: Verdict, batch: int) -> None:
    """One pass over the sealed entries in leaf order, a page at a time, rebuilding the tree
    beside them: each page's stored nodes (those its leaves complete) are read by primary-key
    ranges and compared with the rebuilt ones, and each head's root at its size."""
    t, leaves = audit_entries, audit_leaves
    compact, pending, start = merkle.CompactRange(), list(heads), 0
    while True:
        rows = connection.execute(
            select(leaves.c.leaf_index, t.c.at, t.c.actor, t.c.person_key, t.c.action,
                   t.c.detail, t.c.nonce, t.c.leaf_hash)
            .select_from(leaves.join(t, t.c.id == leaves.c.entry_id))
            .where(leaves.c.leaf_index >= start)
            .order_by(leaves.c.leaf_index).limit(batch)).all()
        if not rows:
            break
        nodes = _nodes_completed_by(connection, rows[0].leaf_index, rows[-1].leaf_index)
        for row in rows:
            index = row.leaf_index
            if index != compact.size:
                verdict.problem = (f"leaf {compact.size} is missing (the next entry in the "
                                   f"tree is leaf {index})")
                verdict.leaf_index = compact.size
                return
            leaf = entry_hash(row.at, row.actor, row.person_key, row.action, row.detail,
                              row.nonce)
            if leaf != bytes(row.leaf_hash):
                verdict.problem = (f"the entry at leaf {index} was altered (its content does "
                                   "not hash to its leaf)")
                verdict.leaf_index = index
                return
            for level, idx, h in compact.append(leaf):
                if level and nodes.get((level, idx)) != h:  # level 0: the leaf, checked above
                    verdict.problem = (f"the stored tree node ({level}, {idx}) does not match "
                                       "the entries")
                    verdict.leaf_index = index
                    return
            verdict.entries += 1
            while pending and pending[0].tree_size == compact.size:
                if compact.root() != pending[0].root_hash:
                    verdict.problem = (f"the signed tree head of size {compact.size} does not "
                                       "match the entries (history was rewritten)")
                    verdict.leaf_index = index
                    return
                pending.pop(0)
        start = rows[-1].leaf_index + 1
    if pending:
        verdict.problem = (f"the signed tree head of size {pending[0].tree_size} covers "
                           f"entries that are not in the log (it has {compact.size})")
        return
    stored = connection.execute(select(func.count()).select_from(audit_tree)).scalar_one()
    if stored != sum(compact.size >> level for level in range(1, compact.size.bit_length())):
        verdict.problem = "the tree holds nodes beyond its entries"


def _nodes_completed_by(connection, first: int, last: int) -> dict[tuple[int, int], bytes]:
    """The stored nodes whose last leaf is in [first, last]: at each level, a range of idx
    (node (level, idx) is complete once leaf (idx + 1)·2^level − 1 is in)."""
    ranges = []
    for level in range(1, (last + 1).bit_length()):  # level 0 is the entries' leaf hashes
        low, high = -(-(first + 1) >> level) - 1, ((last + 1) >> level) - 1
        if low <= high:
            ranges.append(f"(level = {level} AND idx BETWEEN {low} AND {high})")
    if not ranges:
        return {}
    rows = connection.execute(text(
        f"SELECT level, idx, hash FROM audit_tree WHERE {' OR '.join(ranges)}"))
    return {(row[0], row[1]): bytes(row[2]) for row in rows}
