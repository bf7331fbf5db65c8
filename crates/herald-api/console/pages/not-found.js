// A fragment that names no page.

import { h, link } from '../ui.js';

export function render({ main, session }) {
  const home = session?.scope === 'app' && session.appId ? `#/app/${encodeURIComponent(session.appId)}` : '#/';
  main.replaceChildren(
    h('h1', {}, 'Page not found'),
    h('p', {}, 'There is no page at this address. ', link(home, 'Go to the start page'), '.'));
}
