// What the pages of one application share: its name above the heading and
// the "Application" navigation between endpoints, messages and event types.

import { ApiError, path, request } from '../api.js';
import { href } from '../router.js';
import { h, link } from '../ui.js';

const SECTIONS = [
  { key: 'endpoints', label: 'Endpoints', target: (appId) => href('app', appId) },
  { key: 'messages', label: 'Messages', target: (appId) => href('app', appId, 'messages') },
  { key: 'event-types', label: 'Event types', target: (appId) => href('app', appId, 'event-types') },
];

/** Applications by id, so moving between an app's pages does not refetch its name. */
const applications = new Map();

/**
 * Replaces main's content with the application bar, the page's h1 and an
 * empty content element, which it returns with the h1.
 * `current` is the section the page belongs to; `exact` when it is that page.
 */
export function appFrame({ main, appId, current, exact = true, title, signal, session }) {
  const name = h('span', { class: 'app-name' }, applications.get(appId)?.name ?? appId);
  const nav = h('nav', { 'aria-label': 'Application', class: 'tabs' },
    h('ul', {}, SECTIONS.map((s) => h('li', {},
      h('a', {
        href: s.target(appId),
        class: s.key === current ? 'active' : null,
        'aria-current': s.key === current && exact ? 'page' : null,
      }, s.label)))));
  const heading = h('h1', {}, title);
  const content = h('div', { class: 'page-content' });
  main.replaceChildren(
    h('div', { class: 'app-bar' },
      h('p', { class: 'eyebrow' }, 'Application ', name),
      nav),
    heading,
    content);
  if (!applications.has(appId)) {
    request('GET', path`/api/v1/app/${appId}`, { signal })
      .then((app) => {
        applications.set(appId, app);
        name.textContent = app.name;
      })
      .catch((error) => {
        // Another tenant's application, or another one than a portal
        // session's, is answered exactly like one that does not exist.
        if (error instanceof ApiError && error.status === 404 && main.contains(heading)) {
          notFound(main, session);
        }
        // Otherwise the id stays; the page reports its own errors.
      });
  }
  return { heading, content };
}

/** What an application the session cannot see shows instead of its page. */
function notFound(main, session) {
  const home = session?.scope === 'app' && session.appId ? href('app', session.appId) : '#/';
  main.replaceChildren(
    h('h1', {}, 'Application not found'),
    h('p', {}, 'There is no application at this address that this session can see. ',
      link(home, 'Go to the start page'), '.'));
}
