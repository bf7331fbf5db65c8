// The console's only way to the server: the session (kept in memory, never in
// storage or the URL) and a fetch wrapper that sends the session cookie and,
// on changes, the CSRF token. See docs/console.md.

const SESSION_URL = '/console/api/session';
const CHANGES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

let session = null;
let onSignedOut = () => {};

/** An answer other than 2xx, or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    super(detailOf(body) ?? fallback ?? `Request failed (HTTP ${status})`);
    this.name = 'ApiError';
    this.status = status;
    this.code = body && typeof body.code === 'string' ? body.code : null;
    this.body = body;
  }
}

/** Herald's `detail`: a sentence, or a list of validation problems. */
function detailOf(body) {
  if (!body || body.detail == null) return null;
  if (typeof body.detail === 'string') return body.detail;
  if (Array.isArray(body.detail)) {
    return body.detail
      .map((item) => {
        const where = (item.loc ?? []).filter((part) => part !== 'body' && part !== 'query').join('.');
        return where ? `${where}: ${item.msg}` : item.msg;
      })
      .join('; ');
  }
  return null;
}

/** Errors a page need not show: sign-in takes over, or the page was left. */
export function isQuiet(error) {
  return error?.name === 'AbortError' || (error instanceof ApiError && error.status === 401);
}

export function currentSession() {
  return session;
}

export function can(capability) {
  return Boolean(session?.capabilities?.includes(capability));
}

/** Called with the ended session when the server no longer knows it (a 401). */
export function whenSignedOut(handler) {
  onSignedOut = handler;
}

/**
 * Calls the API: `request('GET', '/api/v1/app', { query: { limit: 50 } })`.
 * Resolves to the parsed JSON (null for an empty body); rejects with ApiError.
 */
export async function request(method, path, { body, query, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (CHANGES.has(method) && session?.csrfToken) headers['X-Herald-Csrf'] = session.csrfToken;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(withQuery(path, query), {
      method,
      credentials: 'same-origin',
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(0, null, 'Could not reach Herald. Check your connection and try again.');
  }
  const data = await readJson(response);
  if (response.ok) return data;
  if (response.status === 401 && path !== SESSION_URL && session) {
    const ended = session;
    session = null;
    onSignedOut(ended);
  }
  throw new ApiError(response.status, data);
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** `path?query`, skipping empty values; arrays become comma-separated. */
function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    params.set(key, Array.isArray(value) ? value.join(',') : String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** Path segments are ids from the API or the URL: always encode them. */
export function path(strings, ...values) {
  return strings.reduce((out, part, i) => out + part + (i < values.length ? encodeURIComponent(values[i]) : ''), '');
}

/** The current session, or null when there is none (401). */
export async function loadSession() {
  try {
    session = await request('GET', SESSION_URL);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      session = null;
      return null;
    }
    throw error;
  }
  return session;
}

/** Exchanges a tenant API key (`{key}`) or a portal token (`{token}`) for a session. */
export async function signIn(credential) {
  session = await request('POST', SESSION_URL, { body: credential });
  return session;
}

export async function signOut() {
  try {
    await request('DELETE', SESSION_URL);
  } finally {
    session = null;
  }
}

/** Every page of a listing, up to `max` items, following `iterator`. */
export async function listAll(url, { query = {}, signal, max = 1000 } = {}) {
  const items = [];
  let iterator;
  for (;;) {
    const page = await request('GET', url, { query: { ...query, iterator }, signal });
    items.push(...page.data);
    if (page.done || !page.iterator || items.length >= max) return items;
    iterator = page.iterator;
  }
}
