// RFC 6962 / RFC 9162 Merkle tree proofs, checked with the browser's own
// SHA-256 (WebCrypto): leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 ||
// left || right). The same algorithms as lib/tlog/proof.cc, tested against
// the same vectors (../shared/testdata/merkle-proofs, run in the browser by
// tests/console). Sizes and indices are JavaScript numbers: exact up to
// 2^53, far beyond any ledger this serves; larger ones are refused.

import { concat, equalBytes } from './bytes.js';

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

export async function leafHash(entry) {
  return sha256(concat(Uint8Array.of(0), entry));
}

export async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

function checkCount(n, what) {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} is not a count this can check`);
}

function checkHashes(proof) {
  if (!Array.isArray(proof)) throw new Error('the proof is not a list of hashes');
  for (const h of proof) {
    if (!(h instanceof Uint8Array) || h.length !== 32) throw new Error('a proof hash is not 32 bytes');
  }
}

// Bits of `n` (its bit length).
function bitLength(n) {
  let bits = 0;
  while (n > 0) {
    bits++;
    n = Math.floor(n / 2);
  }
  return bits;
}

// RFC 9162's walk up the tree from node `fn` of a level whose last node is
// `sn`, one level per proof hash (both proofs walk alike): for each hash,
// whether it is the left sibling (the node is SHA-256(0x01 || hash || it)).
// Throws if `count` hashes are too many or too few to reach the root.
function siblingSides(fn, sn, count, what) {
  const sides = [];
  for (let i = 0; i < count; i++) {
    if (sn === 0) throw new Error(`the ${what} proof is too long`);
    const left = fn % 2 === 1 || fn === sn;
    sides.push(left);
    if (left && fn % 2 === 0) {
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error(`the ${what} proof is too short`);
  return sides;
}

// The root the inclusion proof of leaf `index` (hash `leaf`) in a tree of
// `size` leaves leads to (RFC 9162 2.1.3.2); throws if it cannot be one.
export async function rootFromInclusion(index, size, leaf, proof) {
  checkCount(index, 'the index');
  checkCount(size, 'the tree size');
  checkHashes(proof);
  if (!(leaf instanceof Uint8Array) || leaf.length !== 32) throw new Error('the leaf hash is not 32 bytes');
  if (index >= size) throw new Error(`index ${index} is not in a tree of ${size}`);
  const sides = siblingSides(index, size - 1, proof.length, 'inclusion');
  let r = leaf;
  for (let i = 0; i < proof.length; i++) {
    r = sides[i] ? await nodeHash(proof[i], r) : await nodeHash(r, proof[i]);
  }
  return r;
}

// Resolves if the proof shows leaf `index` in the tree of `size` with
// `root`; rejects with what failed otherwise.
export async function verifyInclusion(index, size, leaf, proof, root) {
  const got = await rootFromInclusion(index, size, leaf, proof);
  if (!equalBytes(got, root)) throw new Error('the inclusion proof does not lead to the root');
}

// Resolves if the tree of size1 (root1) is a prefix of the tree of size2
// (root2) by `proof` (RFC 9162 2.1.4.2); rejects with what failed.
export async function verifyConsistency(size1, size2, root1, root2, proof) {
  checkCount(size1, 'the first size');
  checkCount(size2, 'the second size');
  checkHashes(proof);
  if (size2 < size1) throw new Error('the second tree is smaller than the first');
  // Every tree extends the empty one, so a proof from it proves nothing: it
  // is refused (as the vectors and lib/tlog/proof.cc do), and callers treat
  // an empty first tree as consistent without asking.
  if (size1 === 0) throw new Error('a consistency proof from the empty tree proves nothing');
  if (size1 === size2) {
    if (proof.length !== 0) throw new Error('a proof between equal sizes must be empty');
    if (!equalBytes(root1, root2)) throw new Error('the same size with another root');
    return;
  }
  if (proof.length === 0) throw new Error('the consistency proof is empty');
  let path = proof;
  // If size1 is a power of two, its root is the first node of the path.
  if (size1 === 2 ** (bitLength(size1) - 1)) path = [root1, ...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  const sides = siblingSides(fn, sn, path.length - 1, 'consistency');
  let fr = path[0];
  let sr = path[0];
  for (let i = 0; i < sides.length; i++) {
    const c = path[i + 1];
    if (sides[i]) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
    } else {
      sr = await nodeHash(sr, c);
    }
  }
  if (!equalBytes(fr, root1)) throw new Error('the consistency proof does not lead to the first root');
  if (!equalBytes(sr, root2)) throw new Error('the consistency proof does not lead to the second root');
}
