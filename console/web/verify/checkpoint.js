// Signed checkpoints (C2SP signed-note and tlog-checkpoint), checked with
// the browser's own Ed25519 (WebCrypto) against a pinned verifier key
// "<name>+<8 hex id>+<base64(0x01 || 32-byte key)>". The same rules as
// lib/tlog/signed_note.cc: a note is its text (ending in a newline), a
// blank line, and signature lines "— <name> <base64(4-byte id ||
// signature)>"; lines by other keys (a witness's cosignatures) are skipped;
// one by this key that does not verify fails the whole note.

import { concat, fromBase64 } from './bytes.js';

const encoder = new TextEncoder();

async function keyId(name, algorithm, key) {
  const h = new Uint8Array(
    await crypto.subtle.digest('SHA-256', concat(encoder.encode(name), Uint8Array.of(0x0a, algorithm), key)),
  );
  return ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) >>> 0;
}

// Parses and checks a verifier key; resolves to {name, id, key} where `key`
// is a WebCrypto public key.
export async function parseVerifierKey(text) {
  // The name has no '+' and the id is hex, but base64 has '+' of its own:
  // split at the first two only (a key whose base64 held a '+' was
  // refused here before).
  const t = String(text).trim();
  const first = t.indexOf('+');
  const second = first < 0 ? -1 : t.indexOf('+', first + 1);
  if (first < 0 || second < 0) throw new Error('a verifier key is <name>+<id>+<key>');
  const [name, idHex, keyB64] = [t.slice(0, first), t.slice(first + 1, second), t.slice(second + 1)];
  if (!/^[\x21-\x7e]+$/.test(name) || name.includes('+')) throw new Error('the key name is not valid');
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw new Error('the key id is not 8 hex digits');
  const raw = fromBase64(keyB64);
  if (raw.length !== 33 || raw[0] !== 0x01) throw new Error('not an Ed25519 verifier key');
  const id = parseInt(idHex, 16);
  if ((await keyId(name, 0x01, raw.slice(1))) !== id) throw new Error('the key id does not match the key');
  const key = await crypto.subtle.importKey('raw', raw.slice(1), { name: 'Ed25519' }, false, ['verify']);
  return { name, id, key, text: t };
}

// Splits a note into its text and signature lines; throws if malformed.
export function splitNote(note) {
  if (typeof note !== 'string') throw new Error('the checkpoint is not text');
  const at = note.lastIndexOf('\n\n');
  if (at < 0) throw new Error('the note has no signature block');
  const text = note.slice(0, at + 1);
  const block = note.slice(at + 2);
  if (!block.endsWith('\n')) throw new Error('the note does not end in a newline');
  const signatures = [];
  for (const line of block.slice(0, -1).split('\n')) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m) throw new Error('a signature line is malformed');
    const bytes = fromBase64(m[2]);
    if (bytes.length < 5) throw new Error('a signature is too short');
    const id = ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
    signatures.push({ name: m[1], id, payload: bytes.slice(4) });
  }
  if (signatures.length === 0) throw new Error('the note has no signatures');
  return { text, signatures };
}

// Parses a checkpoint body: origin, size, base64 root, extension lines.
export function parseCheckpointBody(text) {
  const lines = text.split('\n');
  if (lines.length < 4 || lines[lines.length - 1] !== '') throw new Error('the checkpoint body is malformed');
  const [origin, sizeText, rootText] = lines;
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new Error('the checkpoint size is not a number');
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) throw new Error('the checkpoint size is too large to check here');
  const root = fromBase64(rootText);
  if (root.length !== 32) throw new Error('the checkpoint root is not 32 bytes');
  return { origin, size, root };
}

// Resolves to {origin, size, root, text} if `note` carries a valid
// signature by `verifier` over a checkpoint of the verifier's own origin.
export async function openCheckpoint(note, verifier) {
  const { text, signatures } = splitNote(note);
  let verified = false;
  for (const s of signatures) {
    if (s.name !== verifier.name || s.id !== verifier.id) continue;
    if (s.payload.length !== 64) throw new Error('the ledger key\'s signature is not 64 bytes');
    const ok = await crypto.subtle.verify({ name: 'Ed25519' }, verifier.key, s.payload, encoder.encode(text));
    if (!ok) throw new Error('the checkpoint\'s signature does not verify with the pinned ledger key');
    verified = true;
  }
  if (!verified) throw new Error('the checkpoint is not signed by the pinned ledger key');
  const cp = parseCheckpointBody(text);
  if (cp.origin !== verifier.name) throw new Error('the checkpoint is for another log');
  return { ...cp, text };
}
