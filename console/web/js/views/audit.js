// Audit: the events query with its filters, each entry verified in this
// browser, and a live tail (server-sent events) that appends what the
// ledger takes in from now on. Returns the clean-up that ends the tail.

import { get } from '../api.js';
import { h, notice } from '../dom.js';
import { describe, mark, timeOf } from '../entries.js';

const FILTERS = [
  ['host', 'Host'],
  ['identity', 'Person'],
  ['resource', 'Resource'],
  ['grant', 'Grant'],
  ['kind', 'Kind'],
  ['verdict', 'Verdict'],
];

export async function render(main, session) {
  main.append(h('h1', {}, 'Audit'));
  const inputs = {};
  const fields = FILTERS.map(([name, label]) => {
    inputs[name] = h('input', { id: `f-${name}`, name, type: 'text', spellcheck: 'false' });
    return h('label', { for: `f-${name}` }, label, inputs[name]);
  });
  inputs.since = h('input', { id: 'f-since', type: 'datetime-local', step: 1 });
  inputs.until = h('input', { id: 'f-until', type: 'datetime-local', step: 1 });
  const live = h('input', { id: 'f-live', type: 'checkbox' });
  const status = h('div', { 'aria-live': 'polite' });
  const body = h('tbody', { id: 'events' });
  const form = h(
    'form',
    { class: 'filters', id: 'audit-filters' },
    fields,
    h('label', { for: 'f-since' }, 'Since', inputs.since),
    h('label', { for: 'f-until' }, 'Until', inputs.until),
    h('label', { for: 'f-live' }, 'Live tail', live),
    h('div', {}, h('button', { type: 'submit' }, 'Search')),
  );
  main.append(
    form,
    status,
    h(
      'div',
      { class: 'table-wrap' },
      h('table', {}, h('thead', {}, h('tr', {}, ['When', 'What', 'Check'].map((t) => h('th', {}, t)))), body),
    ),
  );
  let source = null;
  const stopTail = () => {
    if (source) source.close();
    source = null;
  };
  const query = () => {
    const q = new URLSearchParams();
    for (const [name] of FILTERS) if (inputs[name].value.trim()) q.set(name, inputs[name].value.trim());
    for (const [name, param] of [
      ['since', 'since_ns'],
      ['until', 'until_ns'],
    ]) {
      if (inputs[name].value) q.set(param, (BigInt(new Date(inputs[name].value).getTime()) * 1000000n).toString());
    }
    return q;
  };
  const addRows = (page, atTop) => {
    for (const event of page.events) {
      const { summary, shown } = describe(event);
      const slot = h('td', {}, mark(null));
      const row = h('tr', { 'data-index': event.index }, h('td', {}, timeOf(event)), h('td', {}, summary), slot);
      if (atTop) body.prepend(row);
      else body.append(row);
      if (session.check) {
        session.check.entry(page.checkpoint, event, shown).then((result) => {
          slot.replaceChildren(mark(result));
          if (!result.ok) row.classList.add('failed');
        });
      }
    }
  };
  const search = async () => {
    stopTail();
    body.replaceChildren();
    status.replaceChildren();
    const q = query();
    q.set('limit', '200');
    try {
      const page = await get(`/v1/events?${q}`);
      addRows(page, false);
      status.append(notice(`${page.events.length} entries${page.next_cursor ? ' (the first 200)' : ''}; ledger size ${page.tree_size}.`));
      if (live.checked) {
        const t = query();
        t.set('from_index', String(page.tree_size));
        source = new EventSource(`/v1/events/stream?${t}`);
        source.onmessage = (m) => addRows(JSON.parse(m.data), true);
        source.onerror = () => status.replaceChildren(notice('The live tail was interrupted; it reconnects by itself.', 'error'));
      }
    } catch (e) {
      status.append(notice(`Search failed: ${e.message}`, 'error'));
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    search();
  });
  await search();
  return stopTail;
}
