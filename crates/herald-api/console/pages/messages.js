// `#/app/{appId}/messages`: the message log, newest first. The filters live in
// the fragment's query (`?eventType=…&since=…`), so a reload or a shared link
// shows the same list.

import { isQuiet, listAll, path, request } from '../api.js';
import { fromLocalInput, NONE, toLocalInput } from '../format.js';
import { href, navigate } from '../router.js';
import { emptyState, errorState, h, link, loading, table, tableRow, time } from '../ui.js';
import { appFrame } from './app-frame.js';

const PAGE_SIZE = 50;
const STATUSES = [['', 'Any'], ['0', 'Succeeded'], ['1', 'Pending'], ['2', 'Failed'], ['3', 'Sending']];
const COLUMNS = [{ label: 'Time' }, { label: 'Event type' }, { label: 'Channels' }, { label: 'Message ID' }];

export async function render(ctx) {
  const { main, route, signal } = ctx;
  const { appId } = route.params;
  const filters = readFilters(route.query);
  const { content } = appFrame({ main, appId, current: 'messages', title: 'Messages', signal, session: ctx.session });
  const results = h('div', { class: 'results' }, loading());
  content.replaceChildren(filterForm(appId, filters, signal), results);

  const query = {
    limit: PAGE_SIZE,
    order: 'descending',
    event_types: filters.eventType,
    channel: filters.channel,
    status: filters.status,
    after: filters.since,
    before: filters.until,
    with_content: false,
  };
  const url = path`/api/v1/app/${appId}/msg`;
  let page;
  try {
    page = await request('GET', url, { query, signal });
  } catch (error) {
    if (isQuiet(error)) return;
    results.replaceChildren(errorState(error, () => render(ctx), 'the messages'));
    return;
  }
  if (page.data.length === 0) {
    const filtered = Object.values(filters).some(Boolean);
    results.replaceChildren(emptyState(filtered
      ? 'No messages match these filters. Widen the time range or clear a filter.'
      : 'No messages yet. Messages appear here once your application posts them (POST /api/v1/app/{app_id}/msg).',
    filtered ? link(href('app', appId, 'messages'), 'Clear filters') : null));
    return;
  }

  const rowOf = (m) => ({
    id: m.id,
    cells: [
      time(m.timestamp),
      h('code', {}, m.eventType),
      m.channels?.length ? m.channels.join(', ') : NONE,
      link(href('app', appId, 'message', m.id), h('code', {}, m.id)),
    ],
  });
  const tableEl = table({ caption: 'Messages, newest first', columns: COLUMNS, rows: page.data.map(rowOf) });
  const tbody = tableEl.querySelector('tbody');
  const count = h('p', { class: 'hint', 'aria-live': 'polite' });
  const more = h('button', { type: 'button', class: 'button' }, 'Load more');
  let iterator = page.iterator;
  let shown = page.data.length;
  const updateMore = (done) => {
    more.hidden = done || !iterator;
    count.textContent = `${shown} message${shown === 1 ? '' : 's'} shown${more.hidden ? '' : ' — more are available'}.`;
  };
  more.addEventListener('click', async () => {
    more.disabled = true;
    try {
      const next = await request('GET', url, { query: { ...query, iterator }, signal });
      for (const m of next.data) tbody.append(tableRow(COLUMNS, rowOf(m)));
      shown += next.data.length;
      iterator = next.iterator;
      updateMore(next.done);
    } catch (error) {
      if (!isQuiet(error)) count.textContent = `Could not load more: ${error.message}`;
    } finally {
      more.disabled = false;
    }
  });
  updateMore(page.done);
  results.replaceChildren(tableEl, h('div', { class: 'toolbar' }, more, count));
}

/** The filters in the fragment's query; times are ISO 8601. */
function readFilters(query) {
  const iso = (key) => {
    const value = query.get(key);
    return value && !Number.isNaN(Date.parse(value)) ? new Date(value).toISOString() : '';
  };
  const status = query.get('status') ?? '';
  return {
    eventType: (query.get('eventType') ?? '').trim(),
    channel: (query.get('channel') ?? '').trim(),
    status: STATUSES.some(([value]) => value === status) ? status : '',
    since: iso('since'),
    until: iso('until'),
  };
}

function filterForm(appId, filters, signal) {
  const input = (id, label, attrs) => h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, ...attrs }));
  const eventTypes = h('datalist', { id: 'known-event-types' });
  const status = h('select', { id: 'filter-status' },
    STATUSES.map(([value, label]) => h('option', { value, selected: value === filters.status }, label)));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter messages' },
    input('filter-event-type', 'Event type', { type: 'text', value: filters.eventType, list: 'known-event-types', autocomplete: 'off' }),
    input('filter-channel', 'Channel', { type: 'text', value: filters.channel, autocomplete: 'off' }),
    h('div', { class: 'field' }, h('label', { for: 'filter-status' }, 'Status'), status),
    input('filter-since', 'Since', { type: 'datetime-local', value: filters.since ? toLocalInput(new Date(filters.since)) : '' }),
    input('filter-until', 'Until', { type: 'datetime-local', value: filters.until ? toLocalInput(new Date(filters.until)) : '' }),
    eventTypes,
    h('div', { class: 'field field-actions' }, h('button', { type: 'submit', class: 'button button-primary' }, 'Apply filters')));

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value.trim();
    navigate(href('app', appId, 'messages', {
      eventType: value('filter-event-type'),
      channel: value('filter-channel'),
      status: value('filter-status'),
      since: fromLocalInput(value('filter-since')),
      until: fromLocalInput(value('filter-until')),
    }));
  });

  // Suggestions only: the field takes any name.
  listAll('/api/v1/event-type', { query: { limit: 250 }, signal })
    .then((types) => eventTypes.replaceChildren(...types.map((t) => h('option', { value: t.name }))))
    .catch(() => {});
  return form;
}
