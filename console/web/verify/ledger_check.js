// What the console checks before it marks an audit entry verified, in the
// browser, trusting nothing the server says about itself:
//   1. the page's checkpoint carries a valid Ed25519 signature by the pinned
//      ledger key (pinned by the person, or on first use, in this browser);
//   2. it is consistent with the last checkpoint this browser verified (kept
//      in localStorage): the ledger only grew, by a consistency proof;
//   3. each entry's RFC 6962 leaf hash leads to the checkpoint's root by its
//      inclusion proof;
//   4. every piece of text the page shows for the entry (names, hosts,
//      reasons) is in the entry's bytes (Cap'n Proto keeps text as it is),
//      so the server's decoding cannot put words in an entry's mouth.
// A failure says which of these failed.

import { containsBytes, fromBase64, toBase64 } from './bytes.js';
import { openCheckpoint, parseVerifierKey } from './checkpoint.js';
import { leafHash, verifyConsistency, verifyInclusion } from './merkle.js';

const encoder = new TextEncoder();

export class LedgerCheck {
  // `fetchConsistency(from, to)` resolves to the proof's list of base64
  // hashes (the API's /v1/proof/consistency).
  constructor(verifier, fetchConsistency, storage = window.localStorage) {
    this.verifier = verifier;
    this.fetchConsistency = fetchConsistency;
    this.storage = storage;
    this.storageKey = `latch.checkpoint.${verifier.text}`;
    this.checked = new Map(); // note text -> promise of the opened checkpoint
  }

  static async withKey(keyText, fetchConsistency, storage) {
    return new LedgerCheck(await parseVerifierKey(keyText), fetchConsistency, storage);
  }

  // The last checkpoint this browser verified: {size, root} or null.
  lastSeen() {
    try {
      const saved = JSON.parse(this.storage.getItem(this.storageKey) || 'null');
      if (saved && Number.isSafeInteger(saved.size)) return { size: saved.size, root: fromBase64(saved.root) };
    } catch (e) {
      // A damaged record is as good as none: the next checkpoint is pinned.
    }
    return null;
  }

  // Resolves to the opened checkpoint, once its signature and its
  // consistency with the last one seen are checked; rejects with why not.
  checkpoint(note) {
    if (!this.checked.has(note)) {
      const p = this.openAndCompare(note);
      this.checked.set(note, p);
      p.catch(() => this.checked.delete(note));
    }
    return this.checked.get(note);
  }

  async openAndCompare(note) {
    const cp = await openCheckpoint(note, this.verifier);
    const last = this.lastSeen();
    if (last !== null && last.size > 0) {
      if (cp.size >= last.size) {
        const proof = (await this.fetchConsistency(last.size, cp.size)).map(fromBase64);
        await verifyConsistency(last.size, cp.size, last.root, cp.root, proof).catch((e) => {
          throw new Error(`not consistent with the checkpoint of ${last.size} seen before: ${e.message}`);
        });
      } else {
        const proof = (await this.fetchConsistency(cp.size, last.size)).map(fromBase64);
        await verifyConsistency(cp.size, last.size, cp.root, last.root, proof).catch((e) => {
          throw new Error(`not a prefix of the checkpoint of ${last.size} seen before: ${e.message}`);
        });
      }
    }
    if (last === null || cp.size > last.size) {
      this.storage.setItem(this.storageKey, JSON.stringify({ size: cp.size, root: toBase64(cp.root) }));
    }
    return cp;
  }

  // Resolves to {ok: true} or {ok: false, why} for one event of an events
  // page whose checkpoint is `note`; `shown` is the text the page shows
  // for it.
  async entry(note, event, shown = []) {
    try {
      const cp = await this.checkpoint(note);
      const entry = fromBase64(event.entry);
      const proof = (event.inclusion_proof || []).map(fromBase64);
      await verifyInclusion(event.index, cp.size, await leafHash(entry), proof, cp.root);
      for (const text of shown) {
        if (text && !containsBytes(entry, encoder.encode(text))) {
          return { ok: false, why: `"${text}" is not in the entry the ledger holds` };
        }
      }
      return { ok: true, size: cp.size };
    } catch (e) {
      return { ok: false, why: e.message };
    }
  }
}
