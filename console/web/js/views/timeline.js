// A grant's whole story, in order: the request, its reviews and decision,
// the grant, where it took effect, every connect under it, the holder's
// commands and files, and its revocation or expiry. Every entry is checked
// in this browser (verify/ledger_check.js) and marked; the heading counts
// what verified, and how long it took.

import { get } from '../api.js';
import { h } from '../dom.js';
import { describe, mark, timeOf } from '../entries.js';

const PAGE = 1000;

export async function render(main, session, grantId) {
  if (!/^[1-9][0-9]{0,18}$/.test(grantId)) {
    main.append(h('p', { class: 'notice error' }, 'Not a grant id.'));
    return;
  }
  const started = performance.now();
  const heading = h('p', { id: 'timeline-status', 'aria-live': 'polite' }, 'Loading…');
  const list = h('ol', { class: 'timeline', id: 'timeline' });
  main.append(h('h1', {}, `Grant #${grantId}: its story`), heading, list);
  // Every page, each against its own checkpoint.
  const pages = [];
  let cursor = null;
  do {
    const page = await get(`/v1/events?grant=${grantId}&limit=${PAGE}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''));
    pages.push(page);
    cursor = page.next_cursor;
  } while (cursor);
  const fetched = performance.now();
  const checks = [];
  let shown = 0;
  for (const page of pages) {
    for (const event of page.events) {
      const { summary, shown: texts } = describe(event);
      const slot = h('span', {}, mark(null));
      const item = h('li', { 'data-index': event.index }, timeOf(event), h('span', { class: 'summary' }, summary), ' ', slot);
      list.append(item);
      shown++;
      checks.push(
        session.check
          ? session.check.entry(page.checkpoint, event, texts).then((result) => {
              slot.replaceChildren(mark(result));
              if (!result.ok) item.classList.add('failed');
              return result.ok;
            })
          : Promise.resolve(false).then((ok) => {
              slot.replaceChildren(mark({ ok: false, why: 'no usable ledger key is pinned in this browser' }));
              item.classList.add('failed');
              return ok;
            }),
      );
    }
  }
  if (shown === 0) {
    heading.textContent = 'No entries for this grant (yet).';
    return;
  }
  const results = await Promise.all(checks);
  const ok = results.filter(Boolean).length;
  const ms = Math.round(performance.now() - started);
  heading.textContent = `${ok} of ${results.length} entries verified in this browser (${ms} ms)`;
  heading.className = ok === results.length ? 'notice ok' : 'notice error';
  heading.dataset.verified = String(ok);
  heading.dataset.total = String(results.length);
  heading.dataset.ms = String(ms);
  heading.dataset.fetchMs = String(Math.round(fetched - started));
  // From the navigation's start (performance's time origin): the page load
  // to the verified timeline, as the benchmark reports it.
  heading.dataset.sinceLoad = String(Math.round(performance.now()));
}
