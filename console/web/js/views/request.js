// Request: a resource the policy lets this person ask for, for a time within
// the rule's maximum, with a reason (and the ticket the rule asks for); and
// their requests, with their state.

import { get, post } from '../api.js';
import { formatTime, h, notice } from '../dom.js';

export async function render(main, session) {
  main.append(h('h1', {}, 'Request access'));
  const status = h('div', { 'aria-live': 'polite' });
  if (session.requestable.length === 0) {
    main.append(notice('The policy lets you request no resource.'));
  } else {
    const resource = h(
      'select',
      { id: 'resource', required: true },
      session.requestable.map((r) => h('option', { value: r.name }, `${r.name} (on ${r.hosts.join(', ')})`)),
    );
    const duration = h('input', { id: 'duration', type: 'text', required: true, value: '30m', pattern: '[0-9]+[smhd]([0-9]+[smhd])*' });
    const reason = h('textarea', { id: 'reason', rows: 3 });
    const limits = h('small', {});
    const showLimits = () => {
      const r = session.requestable.find((x) => x.name === resource.value);
      const parts = [`at most ${r.max_duration}`];
      if (r.reason_required) parts.push('a reason is required');
      if (r.ticket_pattern) parts.push(`the reason must carry a ticket matching ${r.ticket_pattern}`);
      limits.textContent = parts.join('; ');
      reason.required = r.reason_required;
    };
    resource.addEventListener('change', showLimits);
    showLimits();
    const form = h(
      'form',
      { class: 'stack', id: 'request-form' },
      h('label', { for: 'resource' }, 'Resource'),
      resource,
      h('label', { for: 'duration' }, 'For how long', limits),
      duration,
      h('label', { for: 'reason' }, 'Reason'),
      reason,
      h('div', {}, h('button', { type: 'submit' }, 'Request')),
      status,
    );
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      status.replaceChildren();
      try {
        const q = await post('/v1/requests', { resource: resource.value, duration: duration.value.trim(), reason: reason.value });
        status.append(notice(`Request ${q.id} for ${q.resource} is ${q.state}.`, 'ok'));
        reason.value = '';
        await listMine(mine, session);
      } catch (e) {
        status.append(notice(`Not requested: ${e.message}`, 'error'));
      }
    });
    main.append(form);
  }
  main.append(h('h2', {}, 'Your requests'));
  const mine = h('div', { id: 'my-requests' });
  main.append(mine);
  await listMine(mine, session);
}

async function listMine(el, session) {
  const { requests } = await get('/v1/requests');
  const rows = requests.filter((q) => q.requester === session.identity).reverse();
  el.replaceChildren();
  if (rows.length === 0) {
    el.append(h('p', { class: 'muted' }, 'None yet.'));
    return;
  }
  el.append(
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        {},
        h('thead', {}, h('tr', {}, ['Request', 'Resource', 'For', 'State', 'Asked', 'Reason'].map((t) => h('th', {}, t)))),
        h(
          'tbody',
          {},
          rows.map((q) =>
            h(
              'tr',
              { 'data-request': q.id },
              h('td', {}, `#${q.id}`),
              h('td', {}, q.resource),
              h('td', {}, q.duration),
              h('td', {}, h('span', { class: 'tag state' }, q.state), q.break_glass ? h('span', { class: 'tag glass' }, ' break-glass') : null),
              h('td', {}, formatTime(q.created_at_ns)),
              h('td', {}, q.reason),
            ),
          ),
        ),
      ),
    ),
  );
}
