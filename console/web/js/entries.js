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
      const verb = { allow: 'allowed', deny: 'denied', audit: 'audited', cut: 'cut' }[event.verdict || body.verdict] || body.verdict;
      summary = `${host}: connect by uid ${body.uid} to port ${body.port} ${verb || ''}` + (body.grantId && body.grantId !== '0' ? ` under grant ${body.grantId}` : '');
      break;
    }
    case 'exec':
      summary = `${host}: uid ${body.uid} ran ${(body.argv || []).join(' ') || body.filename || ''}`;
      break;
    case 'open':
      summary = `${host}: uid ${body.uid} opened ${body.path || body.filename || ''}`;
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
