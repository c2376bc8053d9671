// Inbox: the requests waiting for this person's review: who asked, for
// what, why, for how long, on which hosts, who has approved and how many
// approvals are still missing. Approve or deny with a comment. One's own
// request is not offered for approval (the API refuses it too), unless the
// policy puts this person in a break-glass group for it: then it is offered
// apart, in red, as a break-glass approval that needs a reason and is
// flagged in the ledger.

import { get, post } from '../api.js';
import { formatTime, h, notice } from '../dom.js';

export async function render(main, session) {
  main.append(h('h1', {}, 'Inbox'));
  const list = h('div', { id: 'inbox' });
  main.append(list);
  await fill(list, session);
}

async function fill(list, session) {
  const { requests } = await get('/v1/requests');
  const pending = requests.filter((q) => q.may_review && q.state === 'pending');
  const waiting = pending.filter((q) => q.requester !== session.identity);
  const own = pending.filter((q) => q.requester === session.identity);
  list.replaceChildren();
  if (waiting.length === 0) list.append(h('p', { class: 'muted' }, 'Nothing waits for you.'));
  for (const q of waiting) list.append(card(q, list, session));
  if (own.length > 0) {
    list.append(
      h('h2', {}, 'Break-glass: your own requests'),
      h('p', { class: 'notice error' }, 'The policy lets you approve these yourself in an emergency. A break-glass approval needs a reason, is flagged in the ledger and is seen by every auditor.'),
    );
    for (const q of own) list.append(glassCard(q, list, session));
  }
}

function glassCard(q, list, session) {
  const reason = h('input', { type: 'text', id: `glass-reason-${q.id}`, required: true, 'aria-label': `Emergency reason for request ${q.id}` });
  const status = h('div', { 'aria-live': 'polite' });
  const approve = async () => {
    status.replaceChildren();
    if (!reason.value.trim()) {
      status.append(notice('A break-glass approval needs a reason.', 'error'));
      return;
    }
    try {
      const answer = await post(`/v1/requests/${q.id}/approve`, { comment: reason.value });
      status.append(notice(`Request ${q.id}: break-glass approved, grant ${answer.grant_id} issued.`, 'ok'));
      setTimeout(() => fill(list, session), 1200);
    } catch (e) {
      status.append(notice(`Request ${q.id}: ${e.message}`, 'error'));
    }
  };
  return h(
    'article',
    { class: 'card glass', 'data-own-request': q.id, 'aria-label': `Your request ${q.id}, break-glass` },
    h('p', { class: 'summary' }, `Your request for ${q.resource} for ${q.duration}`, h('span', { class: 'tag glass' }, ' BREAK-GLASS')),
    h('p', {}, h('span', { class: 'muted' }, 'Why: '), q.reason || '(no reason given)'),
    h(
      'div',
      { class: 'row' },
      h('label', { for: `glass-reason-${q.id}` }, 'Emergency reason'),
      reason,
      h('button', { type: 'button', class: 'danger glass-approve', onclick: approve }, 'Approve as break-glass'),
    ),
    status,
  );
}

function card(q, list, session) {
  const comment = h('input', { type: 'text', id: `comment-${q.id}`, 'aria-label': `Comment on request ${q.id}` });
  const status = h('div', { 'aria-live': 'polite' });
  const act = async (verb) => {
    status.replaceChildren();
    try {
      const answer = await post(`/v1/requests/${q.id}/${verb}`, { comment: comment.value });
      const done = answer.grant_id ? `approved: grant ${answer.grant_id} issued` : answer.state;
      status.append(notice(`Request ${q.id}: ${done}.`, 'ok'));
      setTimeout(() => fill(list, session), 1200);
    } catch (e) {
      status.append(notice(`Request ${q.id}: ${e.message}`, 'error'));
    }
  };
  const approvals = q.reviews.filter((r) => r.approve).map((r) => r.reviewer);
  return h(
    'article',
    { class: q.break_glass ? 'card glass' : 'card', 'data-request': q.id, 'aria-label': `Request ${q.id} by ${q.requester}` },
    h(
      'p',
      { class: 'summary' },
      `${q.requester} asks for ${q.resource} for ${q.duration}`,
      q.break_glass ? h('span', { class: 'tag glass' }, ' BREAK-GLASS') : null,
    ),
    h('p', {}, h('span', { class: 'muted' }, 'Why: '), q.reason || '(no reason given)'),
    h('p', {}, h('span', { class: 'muted' }, 'Hosts: '), (q.hosts || []).join(', ') || '(none)'),
    h('p', {}, h('span', { class: 'muted' }, 'Asked: '), formatTime(q.created_at_ns)),
    h(
      'p',
      {},
      h('span', { class: 'muted' }, 'Approved by: '),
      approvals.length ? approvals.join(', ') : 'nobody yet',
      h('span', { class: 'muted' }, ` · still needed: ${q.still_needed}`),
    ),
    h(
      'div',
      { class: 'row' },
      h('label', { for: `comment-${q.id}` }, 'Comment'),
      comment,
      h('button', { type: 'button', class: 'approve', onclick: () => act('approve') }, 'Approve'),
      h('button', { type: 'button', class: 'secondary deny', onclick: () => act('deny') }, 'Deny'),
    ),
    status,
  );
}
