/* The access log, checked in the citizen's own browser (issue 15).

 An entry is "verified" when, with nothing but WebCrypto:
 - SHA-256(0x00 ‖ leaf_data) — the entry's leaf hash, from the very text the API served (it
   names the citizen only by a salted commitment, never by their person key, so nothing is put
   back and the check does not depend on how they signed in) —
   folded with its inclusion proof (RFC 9162 §2.1.3.2) gives the root of the tree head that came
   beside the entries, and
 - that head's Ed25519 signature over
   "osmanthus-audit-tree-head:v1\n{tree_size}\n{root_hash_hex}\n{timestamp}\n" (timestamp: ms) checks against
   the key the service publishes at /.well-known/osmanthus-audit-keys.json under the head's
   key id.
 Nothing here trusts the server's word that an entry is "sealed": an entry the server calls
 sealed whose proof does not fold to the signed root shows "does not verify".
 Pure functions over JSON, no DOM: the browser test calls them directly with a known vector. */
"use strict";
(function (global) {
  const subtle = global.crypto && global.crypto.subtle;
  const enc = new TextEncoder();

  function hexBytes(hex) {
    if (typeof hex !== "string" || hex.length % 2 || /[^0-9a-f]/i.test(hex)) throw new Error("not hex");
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }

  function bytesHex(bytes) {
    return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  function base64url(text) {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  }

  async function sha256(...parts) {
    const total = parts.reduce((n, p) => n + p.length, 0);
    const joined = new Uint8Array(total);
    let at = 0;
    for (const p of parts) { joined.set(p, at); at += p.length; }
    return new Uint8Array(await subtle.digest("SHA-256", joined));
  }

  const LEAF = Uint8Array.of(0), NODE = Uint8Array.of(1);

  /** RFC 9162 leaf hash of the entry's leaf data (its UTF-8 bytes). */
  function leafHash(leafData) { return sha256(LEAF, enc.encode(leafData)); }

  /** RFC 9162 §2.1.3.2: the root an inclusion proof gives for a leaf, or null when the proof
   * cannot be one for (index, size) (too long, too short, index out of range). Plain numbers,
   * never 32-bit bit operations: leaf indexes go beyond 2^31. */
  async function rootFromInclusion(leaf, index, size, proof) {
    if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size)) || index < 0 || index >= size) return null;
    let fn = index, sn = size - 1, r = leaf;
    for (const hex of proof) {
      const p = hexBytes(hex);
      if (sn === 0) return null;
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(NODE, p, r);
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
        }
      } else {
        r = await sha256(NODE, r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 ? r : null;
  }

  /** The bytes a tree head's signature covers (the same text the server and auditors build). */
  function headMessage(head) {
    return enc.encode(`osmanthus-audit-tree-head:v1\n${head.tree_size}\n${head.root_hash}\n${head.timestamp}\n`);
  }

  /** True when the head's Ed25519 signature checks against the published key of its key id. */
  async function headSigned(head, jwks) {
    const jwk = ((jwks && jwks.keys) || []).find((k) => k.kid === head.key_id && k.kty === "OKP" && k.crv === "Ed25519");
    if (!jwk) return false;
    try {
      const key = await subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: jwk.x }, { name: "Ed25519" }, false, ["verify"]);
      return await subtle.verify({ name: "Ed25519" }, key, base64url(head.signature), headMessage(head));
    } catch (err) {
      return false;
    }
  }

  /** "verified", "unsealed" or "failed" for one access-log entry against the signed head. */
  async function entryState(entry, head, signed) {
    if (!entry.sealed) return "unsealed";
    if (!head || !signed || !Array.isArray(entry.proof) || typeof entry.leaf_data !== "string") return "failed";
    try {
      const root = await rootFromInclusion(await leafHash(entry.leaf_data), entry.leaf_index, head.tree_size, entry.proof);
      return root && bytesHex(root) === head.root_hash.toLowerCase() ? "verified" : "failed";
    } catch (err) {
      return "failed";
    }
  }

  /** Every entry's state, in order: one signature check for the head, then each entry's fold. */
  async function checkLog(log, jwks) {
    if (!subtle) return log.entries.map((e) => (e.sealed ? "failed" : "unsealed"));
    const signed = log.tree_head ? await headSigned(log.tree_head, jwks) : false;
    return Promise.all(log.entries.map((e) => entryState(e, log.tree_head, signed)));
  }

  global.OsmanthusVerify = { hexBytes, bytesHex, leafHash, rootFromInclusion, headMessage, headSigned, entryState, checkLog };
})(window);
