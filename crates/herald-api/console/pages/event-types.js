// `#/event-types` (tenant) and `#/app/{appId}/event-types`: the event catalog
// with each type's schemas and example.

import { isQuiet, listAll } from '../api.js';
import { emptyState, errorState, h, jsonBlock, loading, table, badge } from '../ui.js';
import { appFrame } from './app-frame.js';

export async function render(ctx) {
  const { main, route, signal } = ctx;
  const appId = route.params.appId;
  let content;
  if (appId) {
    ({ content } = appFrame({ main, appId, current: 'event-types', title: 'Event types', signal, session: ctx.session }));
  } else {
    content = h('div', { class: 'page-content' });
    main.replaceChildren(h('h1', {}, 'Event types'), content);
  }
  content.replaceChildren(loading());

  let types;
  try {
    types = await listAll('/api/v1/event-type', { query: { limit: 250, with_content: true }, signal, max: 5000 });
  } catch (error) {
    if (isQuiet(error)) return;
    content.replaceChildren(errorState(error, () => render(ctx)));
    return;
  }
  if (types.length === 0) {
    content.replaceChildren(emptyState(
      'The event catalog is empty. Create event types with POST /api/v1/event-type so endpoints can subscribe to them and test events have examples.'));
    return;
  }
  content.replaceChildren(
    h('p', { class: 'hint' }, `${types.length} event type${types.length === 1 ? '' : 's'}. Endpoints subscribe to them by name.`),
    table({
      caption: 'Event types',
      columns: [{ label: 'Name' }, { label: 'Description' }, { label: 'Status' }, { label: 'Schema' }, { label: 'Example' }],
      rows: types.map((t) => ({
        id: t.name,
        header: true,
        attrs: { class: t.deprecated ? 'deprecated' : null },
        cells: [
          h('code', {}, t.name),
          t.description || '—',
          t.deprecated ? badge('Deprecated', 'wait') : badge('Active', 'ok'),
          t.schemas && Object.keys(t.schemas).length
            ? disclosure('Schema', `Schema of ${t.name}`, t.schemas)
            : h('span', { class: 'muted' }, 'None'),
          exampleOf(t.schemas) !== undefined
            ? disclosure('Example', `Example of ${t.name}`, exampleOf(t.schemas))
            : h('span', { class: 'muted' }, 'None'),
        ],
      })),
    }));
}

function disclosure(label, name, value) {
  return h('details', { class: 'json-details' }, h('summary', {}, label), jsonBlock(value, name));
}

/** The first example of the newest schema version, as send-example picks it. */
function exampleOf(schemas) {
  if (!schemas || typeof schemas !== 'object') return undefined;
  const versions = Object.keys(schemas).sort((a, b) => (Number(b) || 0) - (Number(a) || 0));
  const newest = versions.length ? schemas[versions[0]] : null;
  const examples = newest?.examples;
  return Array.isArray(examples) && examples.length ? examples[0] : undefined;
}
