// Audit entries as the console shows them: one line of plain words per
// record, built from the events query's decoding, with the texts it uses
// listed (`shown`) so that the browser can check each is in the entry's own
// bytes (verify/ledger_check.js); and the mark that says what was checked.

import { formatTime, h } from './dom.js';

// {summary, shown}: shown lists the record's text fields the summary uses.
export function describe(event) {
  const r = event.record || {};
  const body = r.record || {};
  const kind = r.kind || 'record';
  const actor = body.actor || '';
  const host = r.host || '';
  const shown = [];
  const use = (text) => {
    if (typeof text === 'string' && text !== '') shown.push(text);
    return text;
  };
  use(host);
  const inner = body[kind] || body;
  let summary;
  switch (kind) {
    case 'requestCreated':
      summary = `${use(inner.requester)} asked for ${use(inner.resource)}: “${use(inner.reason) || ''}”`;
      break;
    case 'requestReviewed':
      summary = `${use(inner.reviewer)} ${inner.approve ? 'approved' : 'denied'} request ${inner.requestId}` +
        (inner.comment ? `: “${use(inner.comment)}”` : '');
      break;
    case 'requestDecided':
      summary = `request ${inner.requestId} ${use(inner.state)}` + (inner.grantId && inner.grantId !== '0' ? `, grant ${inner.grantId}` : '');
      break;
    case 'grantIssued': {
      const g = (inner.grant && inner.grant.grant) || {};
      summary = `${use(actor)} issued grant ${g.id} on ${(g.hostIds || []).map(use).join(', ')}`;
      break;
    }
    case 'grantSetApplied':
      summary = `${host} applied its grant set (version ${inner.version ?? ''}) in the kernel`;
      break;
    case 'grantRevoked':
      summary = `${use(actor)} revoked grant ${inner.grantId}` + (inner.reason ? `: “${use(inner.reason)}”` : '');
      break;
    case 'grantExpired':
      summary = `grant ${inner.grantId} expired`;
      break;
    case 'decision': {
      // Names, not ids: whom the agent found holding the uid, and the
      // resource, as the events query attributes them.
      const verb = { allow: 'allowed', deny: 'denied', audit: 'audited', cut: 'cut' }[body.verdict] || body.verdict;
      summary = `the kernel on ${host} ${verb} ${who(event, body)}'s connect to ${body.daddr}:${body.dport} (${event.resource || `resource ${body.resource_id}`})` +
        (body.grant_id ? ` under grant ${body.grant_id}` : '');
      break;
    }
    case 'connect':
      summary = `${who(event, body)}'s ${body.comm} connected to ${address(body.destination)}:${body.port} on ${host}` +
        (body.result ? ` (failed: ${body.result})` : '');
      break;
    case 'exec':
      summary = `${who(event, body)} ran ${[body.path, ...(body.args || []).slice(1)].join(' ')} on ${host}`;
      break;
    case 'exit':
      summary = `${who(event, body)}'s ${body.comm} (pid ${body.tgid}) exited with ${body.status} on ${host}`;
      break;
    case 'open':
      summary = `${who(event, body)} (${body.comm}) opened ${body.path} on ${host}`;
      break;
    case 'sessionStarted':
      summary = `${use(inner.identity)} signed in to the console (with a ${use(inner.via)})`;
      break;
    case 'sessionEnded':
      summary = `${use(inner.identity)} signed out of the console`;
      break;
    case 'refusal':
      summary = `refused: ${inner.what || ''} ${inner.detail || ''}`;
      break;
    default:
      summary = `${kind}${actor ? ` by ${use(actor)}` : ''}${host ? ` on ${host}` : ''}`;
  }
  return { kind, summary, shown };
}

// Who did it: the identity the events query attributes it to (the grant's
// holder), else the uid.
function who(event, body) {
  return event.identity || `uid ${body.uid}`;
}

// A destination as the records keep it (16 bytes of hex, IPv4 mapped) as
// an address.
function address(hex) {
  if (typeof hex !== 'string' || hex.length !== 32) return String(hex);
  if (hex.startsWith('00000000000000000000ffff')) {
    return [24, 26, 28, 30].map((i) => parseInt(hex.slice(i, i + 2), 16)).join('.');
  }
  return hex.match(/.{4}/g).join(':');
}

// The verification mark of one entry: pending, verified, or failed with why.
export function mark(result) {
  if (!result) return h('span', { class: 'mark pending', 'data-verified': 'pending' }, '… checking');
  if (result.ok) {
    return h('span', { class: 'mark ok', 'data-verified': 'yes', title: `in the signed tree of ${result.size}` }, '✓ verified');
  }
  return h('span', { class: 'mark bad', 'data-verified': 'no' }, '✗ not verified', h('span', { class: 'why' }, result.why));
}

export function timeOf(event) {
  return h('time', {}, formatTime(event.time_ns));
}
