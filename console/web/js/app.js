// The console's shell: who is signed in, the sections, and the router
// (#/request, #/inbox, #/grants, #/audit, #/grant/<id>). Each section is a
// module under views/ with render(main, session).

import { ApiError, get, post, setCsrf } from './api.js';
import { clear, h } from './dom.js';
import { LedgerCheck } from '../verify/ledger_check.js';
import { consistencyProof } from './api.js';
import * as audit from './views/audit.js';
import * as grants from './views/grants.js';
import * as inbox from './views/inbox.js';
import * as request from './views/request.js';
import * as signin from './views/signin.js';
import * as timeline from './views/timeline.js';

const main = document.getElementById('view');
const PINNED_KEY = 'latch.ledgerKey';
let session = null;
let leaving = null; // the current view's clean-up (a live tail's EventSource)

// The ledger key this browser pins: set by the person at sign-in, or the
// one the collector names on first use (said so in the footer).
async function ledgerCheck(offered) {
  let pinned = localStorage.getItem(PINNED_KEY);
  let how = 'pinned in this browser';
  if (!pinned) {
    pinned = offered;
    localStorage.setItem(PINNED_KEY, pinned);
    how = 'pinned on first use';
  }
  const footer = document.getElementById('footer');
  clear(footer).append(`Ledger key (${how}): ${pinned}`);
  const banner = document.getElementById('banner');
  clear(banner);
  if (pinned !== offered) {
    banner.append('This collector names another ledger key than the one pinned in this browser; entries are checked against the pinned key.');
  }
  try {
    return await LedgerCheck.withKey(pinned, consistencyProof);
  } catch (e) {
    banner.append(`The pinned ledger key cannot be used: ${e.message}`);
    return null;
  }
}

async function loadSession() {
  try {
    session = await get('/v1/session');
    setCsrf(session.csrf);
    session.check = await ledgerCheck(session.ledger.key);
  } catch (e) {
    session = null;
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
  }
}

function showChrome() {
  const signedIn = session !== null;
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('sign-out').hidden = !signedIn;
  document.getElementById('who').textContent = signedIn ? session.identity : '';
}

async function route() {
  if (leaving) {
    leaving();
    leaving = null;
  }
  const hash = location.hash || '#/';
  if (session === null) await loadSession();
  showChrome();
  for (const a of document.querySelectorAll('#nav a')) {
    if (hash.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  clear(main);
  try {
    if (session === null) {
      await signin.render(main, { onSignedIn });
    } else if (hash.startsWith('#/request')) {
      await request.render(main, session);
    } else if (hash.startsWith('#/grants')) {
      await grants.render(main, session);
    } else if (hash.startsWith('#/audit')) {
      leaving = await audit.render(main, session);
    } else if (hash.startsWith('#/grant/')) {
      await timeline.render(main, session, hash.slice('#/grant/'.length));
    } else if (hash.startsWith('#/inbox') || session.roles.approver) {
      await inbox.render(main, session);
    } else {
      await request.render(main, session);
    }
    updateInboxCount();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      session = null;
      return route();
    }
    main.append(h('p', { class: 'notice error', role: 'alert' }, `Could not load this page: ${e.message}`));
  }
  main.focus();
}

async function updateInboxCount() {
  if (!session) return;
  try {
    const { requests } = await get('/v1/requests');
    const waiting = requests.filter((q) => q.may_review && q.state === 'pending');
    document.getElementById('inbox-count').textContent = waiting.length ? String(waiting.length) : '';
  } catch (e) {
    // The count is a convenience; the inbox itself says what failed.
  }
}

async function onSignedIn(key) {
  if (key) localStorage.setItem(PINNED_KEY, key);
  session = null;
  location.hash = '#/';
  await route();
}

document.getElementById('sign-out').addEventListener('click', async () => {
  try {
    await post('/v1/session/end');
  } catch (e) {
    // Signed out either way: the page forgets the session.
  }
  session = null;
  setCsrf('');
  location.hash = '#/';
  route();
});

window.addEventListener('hashchange', route);
route();
