// `#/app/{appId}`: the application's endpoints with their last 24 hours, and
// the form that adds one.

import { can, isQuiet, listAll, path, request } from '../api.js';
import { formatMs, formatPercent, parseList } from '../format.js';
import { href, navigate } from '../router.js';
import { emptyState, errorState, h, link, loading, showError, table } from '../ui.js';
import { appFrame } from './app-frame.js';
import { endpointStatus } from './endpoint-status.js';

export async function render(ctx) {
  const { main, route, signal } = ctx;
  const { appId } = route.params;
  const { content } = appFrame({ main, appId, current: 'endpoints', title: 'Endpoints', signal, session: ctx.session });
  content.replaceChildren(loading());

  let endpoints;
  let report;
  try {
    [endpoints, report] = await Promise.all([
      listAll(path`/api/v1/app/${appId}/endpoint`, { query: { limit: 250 }, signal }),
      request('GET', path`/api/v1/app/${appId}/stats/report`, { query: { granularity: 'hour' }, signal })
        .catch((error) => (isQuiet(error) ? Promise.reject(error) : null)),
    ]);
  } catch (error) {
    if (isQuiet(error)) return;
    content.replaceChildren(errorState(error, () => render(ctx)));
    return;
  }

  const form = addEndpointForm(appId);
  const addButton = can('ManageEndpoint')
    ? h('button', {
      type: 'button', class: 'button button-primary', 'aria-expanded': 'false', 'aria-controls': form.id,
      onClick: (event) => toggleForm(event.currentTarget, form),
    }, 'Add endpoint')
    : null;

  const parts = [];
  if (endpoints.length === 0) {
    parts.push(emptyState(
      can('ManageEndpoint')
        ? 'No endpoints yet. Add one to start receiving messages.'
        : 'No endpoints yet. Someone with the ManageEndpoint capability can add one to start receiving messages.',
      addButton));
  } else {
    if (addButton) parts.push(h('div', { class: 'toolbar' }, addButton));
    parts.push(endpointTable(appId, endpoints, report));
  }
  if (addButton) parts.push(form);
  if (!report) parts.push(h('p', { class: 'hint' }, 'Delivery statistics are unavailable right now.'));
  content.replaceChildren(...parts);
}

function endpointTable(appId, endpoints, report) {
  const stats = new Map((report?.endpoints ?? []).map((s) => [s.endpointId, s]));
  return table({
    caption: 'Endpoints',
    columns: [
      { label: 'URL' }, { label: 'Description' }, { label: 'Status' },
      { label: 'Success rate (24 h)', numeric: true }, { label: 'p99 latency (24 h)', numeric: true },
    ],
    rows: endpoints.map((ep) => {
      const s = stats.get(ep.id);
      return {
        id: ep.id,
        header: true,
        cells: [
          link(href('app', appId, 'endpoint', ep.id), h('span', { class: 'url' }, ep.url)),
          ep.description || '—',
          endpointStatus(ep),
          h('span', { 'data-stat': 'successRate', 'data-value': s?.successRate ?? '' }, formatPercent(s?.successRate)),
          h('span', { 'data-stat': 'p99', 'data-value': s?.latencyMs?.p99 ?? '' }, formatMs(s?.latencyMs?.p99)),
        ],
      };
    }),
  });
}

function toggleForm(button, form) {
  const open = form.hidden;
  form.hidden = !open;
  button.setAttribute('aria-expanded', String(open));
  if (open) form.querySelector('input').focus();
}

function addEndpointForm(appId) {
  const field = (id, label, attrs = {}, hint = null) => h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name: id, ...attrs, 'aria-describedby': hint ? `${id}-hint` : null }),
    hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null);
  const submit = h('button', { type: 'submit', class: 'button button-primary' }, 'Create endpoint');
  const form = h('form', { id: 'add-endpoint', class: 'panel form-grid', hidden: true, 'aria-labelledby': 'add-endpoint-title' },
    h('h2', { id: 'add-endpoint-title' }, 'Add an endpoint'),
    field('endpoint-url', 'URL', { type: 'url', required: true, placeholder: 'https://example.com/webhooks', autocomplete: 'url' }),
    field('endpoint-description', 'Description', { type: 'text' }),
    field('endpoint-event-types', 'Event types', { type: 'text', placeholder: 'invoice.paid, invoice.failed' },
      'Comma-separated. Leave empty to receive every event type.'),
    field('endpoint-channels', 'Channels', { type: 'text' },
      'Comma-separated. Leave empty to receive messages of every channel.'),
    h('div', { class: 'actions' }, submit));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value.trim();
    const body = { url: value('endpoint-url') };
    if (value('endpoint-description')) body.description = value('endpoint-description');
    const filterTypes = parseList(value('endpoint-event-types'));
    if (filterTypes) body.filterTypes = filterTypes;
    const channels = parseList(value('endpoint-channels'));
    if (channels) body.channels = channels;
    submit.disabled = true;
    try {
      const created = await request('POST', path`/api/v1/app/${appId}/endpoint`, { body });
      navigate(href('app', appId, 'endpoint', created.id));
    } catch (error) {
      showError(error);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
