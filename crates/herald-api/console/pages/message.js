// `#/app/{appId}/message/{messageId}`: one message — its payload, where it
// went (with a Resend per endpoint) and every attempt, each expandable.

import { isQuiet, listAll, path, request } from '../api.js';
import { formatMs, NONE, statusLabel, statusTone } from '../format.js';
import { href } from '../router.js';
import {
  actionButton, badge, definitions, errorState, h, jsonBlock, link, loading, poll, runAction,
  section, showSuccess, table, time,
} from '../ui.js';
import { appFrame } from './app-frame.js';

export async function render(ctx) {
  const { main, route, signal } = ctx;
  const { appId, messageId } = route.params;
  const { content } = appFrame({ main, appId, current: 'messages', exact: false, title: `Message ${messageId}`, signal, session: ctx.session });
  content.replaceChildren(loading());

  const msgUrl = path`/api/v1/app/${appId}/msg/${messageId}`;
  let message;
  try {
    message = await request('GET', msgUrl, { signal });
  } catch (error) {
    if (isQuiet(error)) return;
    content.replaceChildren(errorState(error, () => render(ctx)));
    return;
  }

  const deliveries = section('Deliveries');
  const attempts = section('Attempts');
  const page = { appId, messageId, msgUrl, signal, deliveries, attempts };
  content.replaceChildren(
    h('div', { class: 'columns' },
      h('div', { class: 'column-main' }, payloadSection(message)),
      h('div', { class: 'column-side' }, detailsSection(message))),
    deliveries,
    attempts);
  await refresh(page);
}

/** Loads the attempts (and, unless told not to, the deliveries) again; returns the attempts. */
async function refresh(page, { deliveries = true } = {}) {
  const { appId, messageId, msgUrl, signal } = page;
  const [destinations, attemptList] = await Promise.allSettled([
    deliveries ? listAll(`${msgUrl}/endpoint`, { query: { limit: 250 }, signal }) : null,
    listAll(path`/api/v1/app/${appId}/attempt/msg/${messageId}`, { query: { limit: 250 }, signal }),
  ]);
  if (signal.aborted) return null;
  if (deliveries) fill(page.deliveries, destinations, (list) => deliveriesTable(page, list), () => refresh(page), 'the deliveries');
  // Attempts the viewer opened stay open when the list is drawn again.
  const open = new Set([...page.attempts.querySelectorAll('li[data-id] > details[open]')].map((d) => d.parentElement.dataset.id));
  fill(page.attempts, attemptList, (list) => attemptsList(appId, list, open), () => refresh(page), 'the attempts');
  return attemptList.status === 'fulfilled' ? attemptList.value : null;
}

function fill(sectionEl, settled, build, retry, what) {
  const heading = sectionEl.querySelector('h2');
  if (settled.status === 'fulfilled') sectionEl.replaceChildren(heading, build(settled.value));
  else if (!isQuiet(settled.reason)) sectionEl.replaceChildren(heading, errorState(settled.reason, retry, what));
}

function payloadSection(message) {
  const el = section('Payload');
  if (message.payload?.expired === true && Object.keys(message.payload).length === 1) {
    el.append(h('p', { class: 'hint' }, 'The payload has expired (retention) or was expunged.'));
  }
  el.append(jsonBlock(message.payload, 'Payload JSON'));
  return el;
}

function detailsSection(message) {
  const el = section('Details');
  el.append(definitions([
    ['Event type', h('code', {}, message.eventType)],
    ['Channels', message.channels?.length ? message.channels.join(', ') : NONE],
    ['Created', time(message.timestamp)],
    ['Message ID', h('code', {}, message.id)],
    message.eventId ? ['Event ID', h('code', {}, message.eventId)] : null,
    message.tags?.length ? ['Tags', message.tags.join(', ')] : null,
  ]));
  return el;
}

function deliveriesTable(page, destinations) {
  if (destinations.length === 0) {
    return h('p', { class: 'empty' }, 'This message was not sent to any endpoint: none accepted its event type and channels when it was created.');
  }
  return table({
    caption: 'Deliveries of this message, per endpoint',
    columns: [{ label: 'Endpoint' }, { label: 'Status' }, { label: 'Next attempt' }, { label: 'Actions' }],
    rows: destinations.map((d) => ({
      id: d.id,
      header: true,
      cells: [
        link(href('app', page.appId, 'endpoint', d.id), h('span', { class: 'url' }, d.url)),
        badge(statusLabel(d.status, d.statusText), statusTone(d.status)),
        d.nextAttempt ? time(d.nextAttempt) : NONE,
        resendButton(page, d),
      ],
    })),
  });
}

/** How long the page waits for a resend's attempt to show before leaving it to a reload. */
const RESEND_WAIT_MS = 15000;

function resendButton(page, destination) {
  const button = actionButton('Resend', {
    capability: 'CreateAttempts',
    onClick: () => runAction(button, async () => {
      const before = new Set((await currentAttempts(page)).map((a) => a.id));
      await request('POST', `${page.msgUrl}/endpoint/${encodeURIComponent(destination.id)}/resend`, { body: {} });
      showSuccess(`Resend to ${destination.url} queued.`);
      // A worker makes the attempt: look again each second until it shows.
      const seen = await poll(async () => {
        const list = await refresh(page, { deliveries: false });
        return Boolean(list?.some((a) => !before.has(a.id)));
      }, { signal: page.signal, timeoutMs: RESEND_WAIT_MS });
      if (page.signal.aborted) return;
      await refresh(page);
      if (!seen) showSuccess(`Resend to ${destination.url} queued; its attempt has not been made yet. Reload the page later to see it.`);
      // The table was drawn anew: keep the keyboard where it was.
      if (!document.activeElement || document.activeElement === document.body) {
        page.deliveries.querySelector(`tr[data-id="${CSS.escape(destination.id)}"] button`)?.focus();
      }
    }),
  });
  return button;
}

async function currentAttempts(page) {
  return listAll(path`/api/v1/app/${page.appId}/attempt/msg/${page.messageId}`, { query: { limit: 250 }, signal: page.signal });
}

function attemptsList(appId, attempts, open = new Set()) {
  if (attempts.length === 0) {
    return h('p', { class: 'empty' }, 'No attempts yet. Attempts appear here as workers deliver the message.');
  }
  return h('ul', { class: 'attempts' }, attempts.map((a) => h('li', { 'data-id': a.id, class: 'attempt' },
    h('details', { open: open.has(a.id) },
      h('summary', {},
        h('span', { class: 'attempt-time' }, time(a.timestamp)),
        h('span', { class: 'attempt-code' }, a.responseStatusCode ? `HTTP ${a.responseStatusCode}` : `No response${a.errorClass ? ` (${a.errorClass})` : ''}`),
        badge(statusLabel(a.status, a.statusText), statusTone(a.status)),
        h('span', { class: 'attempt-url url' }, a.url),
        h('span', { class: 'attempt-duration' }, formatMs(a.responseDurationMs))),
      attemptDetails(appId, a)))));
}

function attemptDetails(appId, a) {
  return h('div', { class: 'attempt-body' },
    definitions([
      ['Attempt ID', h('code', {}, a.id)],
      ['Endpoint', link(href('app', appId, 'endpoint', a.endpointId), h('code', {}, a.endpointId))],
      ['Request URL', h('span', { class: 'url' }, a.url)],
      ['Trigger', a.triggerType === 1 ? 'Manual (resend or recovery)' : 'Scheduled'],
      ['Response status', a.responseStatusCode ? String(a.responseStatusCode) : 'No response received'],
      a.errorClass ? ['Failure class', a.errorClass] : null,
      ['Duration', formatMs(a.responseDurationMs)],
    ]),
    h('h3', {}, 'Request headers'),
    headersTable(a.requestHeaders, `Request headers of attempt ${a.id}`,
      'Not recorded for this attempt.'),
    h('h3', {}, 'Request body'),
    h('p', { class: 'hint' }, 'The message payload shown on this page, byte for byte.'),
    h('h3', {}, 'Response headers'),
    headersTable(a.responseHeaders, `Response headers of attempt ${a.id}`,
      'None: no response was received, or they were expunged.'),
    h('h3', {}, 'Response body'),
    a.response
      ? h('pre', { class: 'json', tabindex: '0', role: 'region', 'aria-label': `Response body of attempt ${a.id}` }, prettyIfJson(a.response))
      : h('p', { class: 'hint' }, 'Empty, expunged, or not received.'));
}

// Headers as the API reports them (name → value); credentials arrive redacted.
function headersTable(headers, label, empty) {
  const entries = Object.entries(headers || {});
  if (entries.length === 0) {
    return h('p', { class: 'hint' }, empty);
  }
  return h('table', { class: 'headers', 'aria-label': label },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Value'))),
    h('tbody', {}, entries.map(([name, value]) =>
      h('tr', {}, h('th', { scope: 'row' }, h('code', {}, name)), h('td', {}, h('code', {}, value))))));
}

function prettyIfJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}
