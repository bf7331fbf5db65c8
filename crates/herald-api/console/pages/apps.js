// `#/`: the tenant's applications, each with its number of endpoints and its
// success rate over the last 24 hours.

import { isQuiet, listAll, path, request } from '../api.js';
import { formatPercent, NONE } from '../format.js';
import { href } from '../router.js';
import { emptyState, errorState, h, link, loading, table, time } from '../ui.js';

const ENDPOINT_PAGE = 250;

export async function render(ctx) {
  const { main, signal } = ctx;
  const content = h('div', { class: 'page-content' });
  main.replaceChildren(h('h1', {}, 'Applications'), content);
  content.replaceChildren(loading());

  let apps;
  try {
    apps = await listAll('/api/v1/app', { query: { limit: 250 }, signal });
  } catch (error) {
    if (isQuiet(error)) return;
    content.replaceChildren(errorState(error, () => render(ctx)));
    return;
  }
  if (apps.length === 0) {
    content.replaceChildren(emptyState(
      'No applications yet. Create one with POST /api/v1/app (one per customer of yours), then add endpoints to it.'));
    return;
  }

  const cells = new Map();
  const rows = apps.map((app) => {
    const endpoints = h('span', { 'data-stat': 'endpoints', 'aria-busy': 'true' }, '…');
    const successRate = h('span', { 'data-stat': 'successRate', 'aria-busy': 'true' }, '…');
    cells.set(app.id, { endpoints, successRate });
    return {
      id: app.id,
      header: true,
      cells: [link(href('app', app.id), app.name), app.uid ?? NONE, time(app.createdAt), endpoints, successRate],
    };
  });
  content.replaceChildren(table({
    caption: 'Applications',
    columns: [
      { label: 'Name' }, { label: 'UID' }, { label: 'Created' },
      { label: 'Endpoints', numeric: true }, { label: 'Success rate (24 h)', numeric: true },
    ],
    rows,
  }));

  // Two requests per application, a few at a time, filled in as they answer.
  await eachLimited(apps, 4, async (app) => {
    const { endpoints, successRate } = cells.get(app.id);
    const [list, report] = await Promise.allSettled([
      request('GET', path`/api/v1/app/${app.id}/endpoint`, { query: { limit: ENDPOINT_PAGE }, signal }),
      request('GET', path`/api/v1/app/${app.id}/stats/report`, { query: { granularity: 'hour' }, signal }),
    ]);
    if (signal.aborted) return;
    fill(endpoints, list, (page) => [page.done ? String(page.data.length) : `${ENDPOINT_PAGE}+`, page.data.length]);
    fill(successRate, report, (r) => [formatPercent(r.successRate), r.successRate ?? '']);
  });
}

function fill(el, settled, toText) {
  el.removeAttribute('aria-busy');
  if (settled.status === 'fulfilled') {
    const [text, value] = toText(settled.value);
    el.textContent = text;
    el.dataset.value = String(value);
  } else {
    el.textContent = 'Unavailable';
    el.title = settled.reason?.message ?? '';
  }
}

async function eachLimited(items, limit, work) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
