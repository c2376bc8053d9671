// Sign in: an API token (as latchctl uses), exchanged for a session cookie.
// The token is sent once, in the sign-in call's Authorization header, and
// not kept: not in the URL, not in storage.

import { signIn } from '../api.js';
import { h, notice } from '../dom.js';

export async function render(main, { onSignedIn }) {
  const token = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const key = h('input', {
    id: 'ledger-key',
    type: 'text',
    spellcheck: 'false',
    placeholder: 'origin+1234abcd+AQ…',
    value: localStorage.getItem('latch.ledgerKey') || '',
  });
  const status = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'stack', id: 'sign-in' },
    h('label', { for: 'token' }, 'API token', h('small', {}, 'the token you use with latchctl')),
    token,
    h(
      'label',
      { for: 'ledger-key' },
      'Ledger key',
      h('small', {}, 'the ledger_key your operator published; empty: trust the one this collector names, and keep it'),
    ),
    key,
    h('div', {}, h('button', { type: 'submit' }, 'Sign in')),
    status,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    status.replaceChildren();
    try {
      const value = token.value.trim();
      token.value = '';
      await signIn(value);
      await onSignedIn(key.value.trim());
    } catch (e) {
      status.append(notice(`Not signed in: ${e.message}`, 'error'));
    }
  });
  main.append(h('h1', {}, 'Sign in to Latch'), form);
  token.focus();
}
