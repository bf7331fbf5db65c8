// Hash routes (`#/app/app_1/endpoint/ep_1?window=1h`): real links, back and
// forward, and a reload that lands on the same page. Anything after `?` is
// the page's own state (filters, window).

const ROUTES = [
  { name: 'apps', pattern: [] },
  { name: 'event-types', pattern: ['event-types'] },
  { name: 'endpoints', pattern: ['app', ':appId'] },
  { name: 'endpoint', pattern: ['app', ':appId', 'endpoint', ':endpointId'] },
  { name: 'messages', pattern: ['app', ':appId', 'messages'] },
  { name: 'message', pattern: ['app', ':appId', 'message', ':messageId'] },
  { name: 'app-event-types', pattern: ['app', ':appId', 'event-types'] },
];

/** Whether a fragment is one of ours (the skip link's `#main` is not). */
export function isRouteHash(hash) {
  return hash === '' || hash === '#' || hash.startsWith('#/');
}

/** `{ name, params, query }` for a fragment; name is 'not-found' when none match. */
export function parse(hash = location.hash) {
  const text = hash.replace(/^#/, '');
  const [pathPart, queryPart = ''] = text.split('?', 2);
  const segments = pathPart.split('/').filter(Boolean).map(safeDecode);
  const query = new URLSearchParams(queryPart);
  for (const route of ROUTES) {
    const params = matchPattern(route.pattern, segments);
    if (params) return { name: route.name, params, query };
  }
  return { name: 'not-found', params: {}, query };
}

function matchPattern(pattern, segments) {
  if (pattern.length !== segments.length) return null;
  const params = {};
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i].startsWith(':')) params[pattern[i].slice(1)] = segments[i];
    else if (pattern[i] !== segments[i]) return null;
  }
  return params;
}

function safeDecode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/**
 * A link target: `href('app', appId, 'endpoint', epId)` → `#/app/…/endpoint/…`;
 * an object as last argument becomes the query (empty values skipped).
 */
export function href(...parts) {
  let query = null;
  if (parts.length && typeof parts[parts.length - 1] === 'object') query = parts.pop();
  let out = '#/' + parts.map((p) => encodeURIComponent(p)).join('/');
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
    }
    const text = params.toString();
    if (text) out += '?' + text;
  }
  return out;
}

/** Goes to a route, adding a history entry (the hashchange renders it). */
export function navigate(target) {
  if (location.hash === target) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = target;
}

/** Changes the URL without a new history entry and without rendering. */
export function replace(target) {
  history.replaceState(history.state, '', location.pathname + location.search + target);
}

export function onChange(handler) {
  window.addEventListener('hashchange', () => {
    if (isRouteHash(location.hash)) handler(parse());
  });
}
