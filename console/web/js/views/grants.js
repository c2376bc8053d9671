// Grants: the live ones with the time they have left and, per host, since
// when its kernel holds them (the agents' applied records); revoke with a
// reason; and the ended ones.

import { get, post } from '../api.js';
import { formatSpan, formatTime, h, notice } from '../dom.js';

export async function render(main, session) {
  main.append(h('h1', {}, 'Grants'));
  const { grants, past } = await get('/v1/grants?past=1');
  const mayRevoke = session.roles.approver || session.roles.auditor;
  if (grants.length === 0) main.append(h('p', { class: 'muted', id: 'no-grants' }, 'No live grant.'));
  for (const g of grants) main.append(liveCard(g, mayRevoke, main, session));
  main.append(h('h2', {}, 'Ended'));
  if (past.length === 0) {
    main.append(h('p', { class: 'muted' }, 'None.'));
    return;
  }
  main.append(
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { id: 'past-grants' },
        h('thead', {}, h('tr', {}, ['Grant', 'Who', 'Resources', 'Ended', 'When', ''].map((t) => h('th', {}, t)))),
        h(
          'tbody',
          {},
          past.map((g) =>
            h(
              'tr',
              { 'data-grant': g.id },
              h('td', {}, `#${g.id}`),
              h('td', {}, names(g).principals.join(', ')),
              h('td', {}, names(g).resources.join(', ')),
              h('td', {}, g.ended),
              h('td', {}, formatTime(g.ended_at_ns)),
              h('td', {}, h('a', { href: `#/grant/${g.id}` }, 'Timeline')),
            ),
          ),
        ),
      ),
    ),
  );
}

function names(g) {
  return g.names || { principals: [], resources: [] };
}

function liveCard(g, mayRevoke, main, session) {
  const until = Number(BigInt(g.grant.not_after_ns) / 1000000n);
  const left = h('span', { class: 'time-left' }, formatSpan(until - Date.now()));
  const timer = setInterval(() => {
    if (!left.isConnected) return clearInterval(timer);
    left.textContent = formatSpan(until - Date.now());
  }, 1000);
  const hosts = g.grant.hosts.map((host) => {
    const since = g.effective_since[host];
    return h('li', { 'data-host': host }, `${host}: `, since ? `in the kernel since ${formatTime(since)}` : 'not yet in its kernel');
  });
  const reason = h('input', { type: 'text', id: `revoke-reason-${g.id}`, required: true, 'aria-label': `Why revoke grant ${g.id}` });
  const status = h('div', { 'aria-live': 'polite' });
  const revoke = async () => {
    status.replaceChildren();
    try {
      await post(`/v1/grants/${g.id}/revoke`, { reason: reason.value });
      status.append(notice(`Grant ${g.id} revoked.`, 'ok'));
      setTimeout(() => {
        main.replaceChildren();
        render(main, session);
      }, 800);
    } catch (e) {
      status.append(notice(`Grant ${g.id}: ${e.message}`, 'error'));
    }
  };
  return h(
    'article',
    { class: g.grant.break_glass ? 'card glass' : 'card', 'data-grant': g.id },
    h(
      'p',
      { class: 'summary' },
      `Grant #${g.id}: ${names(g).principals.join(', ')} → ${names(g).resources.join(', ')}`,
      g.grant.break_glass ? h('span', { class: 'tag glass' }, ' BREAK-GLASS') : null,
    ),
    h('p', {}, h('span', { class: 'muted' }, 'Time left: '), left, h('span', { class: 'muted' }, ` (until ${formatTime(g.grant.not_after_ns)})`)),
    h('ul', { class: 'hosts' }, hosts),
    h('p', {}, h('a', { href: `#/grant/${g.id}` }, 'Timeline')),
    mayRevoke
      ? h(
          'div',
          { class: 'row' },
          h('label', { for: `revoke-reason-${g.id}` }, 'Reason'),
          reason,
          h('button', { type: 'button', class: 'danger revoke', onclick: revoke }, 'Revoke'),
        )
      : null,
    status,
  );
}
