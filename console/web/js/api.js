// The documented JSON API (docs/API.md), called with the session cookie the
// browser holds (HttpOnly: this code never sees it) and, for every change,
// the session's CSRF token. The sign-in token is sent once, in a header of
// the sign-in call, and is not kept.

let csrf = '';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function setCsrf(token) {
  csrf = token || '';
}

export async function call(method, path, body, extraHeaders = {}) {
  const headers = { Accept: 'application/json', ...extraHeaders };
  if (method !== 'GET') headers['X-Latch-CSRF'] = csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  let data = null;
  try {
    data = await res.json();
  } catch (e) {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || `${res.status} ${res.statusText}`);
  return data;
}

export const get = (path) => call('GET', path);
export const post = (path, body = {}) => call('POST', path, body);

export async function signIn(token) {
  const answer = await call('POST', '/v1/session', {}, { Authorization: `Bearer ${token}` });
  setCsrf(answer.csrf);
  return answer;
}

export async function consistencyProof(from, to) {
  const answer = await get(`/v1/proof/consistency?from=${from}&to=${to}`);
  return answer.proof;
}
