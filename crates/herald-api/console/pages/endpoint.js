// `#/app/{appId}/endpoint/{endpointId}`: one endpoint — its delivery report,
// recent attempts, settings and the actions the session may take.

import { can, isQuiet, listAll, path, request } from '../api.js';
import { formatMs, fromLocalInput, NONE, statusLabel, statusTone, toLocalInput } from '../format.js';
import { href, replace } from '../router.js';
import {
  actionButton, badge, confirmDialog, definitions, errorState, h, lacking, link, loading, poll,
  runAction, section, setChildren, showSuccess, table, time,
} from '../ui.js';
import { appFrame } from './app-frame.js';
import { endpointStatus } from './endpoint-status.js';
import { DEFAULT_WINDOW, reportSection, WINDOWS } from './endpoint-report.js';

const RECOVER_MAX_DAYS = 14;

export async function render(ctx) {
  const { main, route, signal } = ctx;
  const { appId, endpointId } = route.params;
  const { heading, content } = appFrame({ main, appId, current: 'endpoints', exact: false, title: 'Endpoint', signal, session: ctx.session });
  content.replaceChildren(loading());

  const base = path`/api/v1/app/${appId}/endpoint/${endpointId}`;
  let endpoint;
  try {
    endpoint = await request('GET', base, { signal });
  } catch (error) {
    if (isQuiet(error)) return;
    content.replaceChildren(errorState(error, () => render(ctx)));
    return;
  }
  heading.textContent = endpoint.url;
  heading.classList.add('url-heading');

  const windowKey = WINDOWS[route.query.get('window')] ? route.query.get('window') : DEFAULT_WINDOW;
  const report = reportSection({
    appId, endpointId, windowKey, signal,
    onWindow: (key) => replace(href('app', appId, 'endpoint', endpointId, key === DEFAULT_WINDOW ? {} : { window: key })),
  });
  const attempts = attemptsSection({ appId, endpointId, signal });
  const page = { appId, endpointId, base, endpoint, signal, report, attempts, statusSlot: h('div', { class: 'endpoint-meta' }) };
  renderMeta(page);

  content.replaceChildren(
    page.statusSlot,
    report.element,
    h('div', { class: 'columns' },
      h('div', { class: 'column-main' }, attempts.element),
      h('div', { class: 'column-side' }, actionsSection(page), settingsSection(page))));
}

/** Status badges and identifiers under the heading; re-rendered after a change. */
function renderMeta(page) {
  const ep = page.endpoint;
  setChildren(page.statusSlot,
    endpointStatus(ep),
    ep.description ? h('p', { class: 'description' }, ep.description) : null,
    h('p', { class: 'ids' }, 'ID ', h('code', {}, ep.id), ep.uid ? [' · UID ', h('code', {}, ep.uid)] : null),
    ep.disabled && ep.disabledReason
      ? h('p', { class: 'hint' }, 'Disabled ', ep.disabledAt ? time(ep.disabledAt) : null, ` (${disabledReasonText(ep.disabledReason)}).`)
      : null);
}

function disabledReasonText(reason) {
  return reason === 'manual' ? 'by hand' : reason;
}

// ---- Recent attempts ----------------------------------------------------

function attemptsSection({ appId, endpointId, signal }) {
  const element = section('Recent attempts');
  const body = h('div', {}, loading());
  element.append(body);
  let latestId = null;

  async function load() {
    const page = await request('GET', path`/api/v1/app/${appId}/attempt/endpoint/${endpointId}`, {
      query: { limit: 20, order: 'descending' }, signal,
    });
    return page.data;
  }

  function show(list) {
    latestId = list[0]?.id ?? null;
    if (list.length === 0) {
      body.replaceChildren(h('p', { class: 'empty' }, 'No attempts yet. Send a test event, or post a message whose event type and channel this endpoint accepts.'));
      return;
    }
    body.replaceChildren(table({
      caption: 'The 20 most recent attempts to this endpoint',
      columns: [
        { label: 'Time' }, { label: 'Status code', numeric: true }, { label: 'Status' },
        { label: 'Message' }, { label: 'Duration', numeric: true },
      ],
      rows: list.map((a) => ({
        id: a.id,
        cells: [
          time(a.timestamp),
          a.responseStatusCode ? String(a.responseStatusCode) : h('span', { title: 'No response was received' }, a.errorClass ?? 'none'),
          badge(statusLabel(a.status, a.statusText), statusTone(a.status)),
          link(href('app', appId, 'message', a.msgId), h('code', {}, a.msgId)),
          a.responseDurationMs == null ? NONE : formatMs(a.responseDurationMs),
        ],
      })),
    }));
  }

  async function refresh() {
    try {
      show(await load());
    } catch (error) {
      if (!isQuiet(error)) body.replaceChildren(errorState(error, refresh, 'the recent attempts'));
    }
  }

  /** After an action that makes attempts: re-fetch each second, for up to 10 s, until a new one appears. */
  async function awaitNew() {
    const before = latestId;
    let list = null;
    await poll(async () => {
      list = await load().catch(() => null);
      return Boolean(list && list[0] && list[0].id !== before);
    }, { signal });
    if (list && !signal.aborted) show(list);
  }

  refresh();
  return { element, refresh, awaitNew };
}

// ---- Actions ------------------------------------------------------------

function actionsSection(page) {
  const element = section('Actions', { className: 'actions-panel' });
  element.append(toggleAction(page), secretActions(page), recoverForm(page), sendTestForm(page));
  return element;
}

function toggleAction(page) {
  const label = () => (page.endpoint.disabled ? 'Enable endpoint' : 'Disable endpoint');
  const button = actionButton(label(), {
    capability: 'ManageEndpoint',
    onClick: () => runAction(button, async () => {
      const disabled = !page.endpoint.disabled;
      page.endpoint = await request('PATCH', page.base, { body: { disabled } });
      button.textContent = label();
      renderMeta(page);
      showSuccess(disabled ? 'Endpoint disabled. Messages are not sent to it until it is enabled.' : 'Endpoint enabled.');
    }),
  });
  return h('div', { class: 'action' }, h('h3', {}, 'Status'), button);
}

function secretActions(page) {
  const output = h('div', { class: 'secret', 'aria-live': 'polite' });
  const reveal = actionButton('Reveal secret', {
    capability: 'ViewEndpointSecret',
    onClick: () => {
      if (output.firstChild) {
        output.replaceChildren();
        reveal.textContent = 'Reveal secret';
        return undefined;
      }
      return runAction(reveal, async () => {
        await showSecret();
        reveal.textContent = 'Hide secret';
      });
    },
  });
  const rotate = actionButton('Rotate secret', {
    capability: 'ManageEndpointSecret',
    onClick: async () => {
      const confirmed = await confirmDialog({
        title: 'Rotate the signing secret?',
        message: 'A new secret signs every delivery from now on. The current one stays valid for 24 hours, so update your receiver within a day.',
        confirmLabel: 'Rotate now',
      });
      if (!confirmed) return;
      await runAction(rotate, async () => {
        await request('POST', `${page.base}/secret/rotate`, { body: {} });
        showSuccess('Secret rotated. The previous secret stays valid for 24 hours.');
        if (output.firstChild) await showSecret();
      });
    },
  });

  async function showSecret() {
    const secret = await request('GET', `${page.base}/secret`);
    output.replaceChildren(h('code', { 'data-secret': '' }, secret.key));
  }

  return h('div', { class: 'action' }, h('h3', {}, 'Signing secret'),
    h('div', { class: 'button-row' }, reveal, rotate), output);
}

function recoverForm(page) {
  const allowed = can('CreateAttempts');
  const now = new Date();
  const input = h('input', {
    id: 'recover-since', type: 'datetime-local', required: true, disabled: !allowed,
    value: toLocalInput(new Date(now.getTime() - 24 * 3600e3)),
    min: toLocalInput(new Date(now.getTime() - RECOVER_MAX_DAYS * 24 * 3600e3)),
    max: toLocalInput(now),
    'aria-describedby': 'recover-hint',
  });
  const button = actionButton('Recover failed messages', { capability: 'CreateAttempts', type: 'submit' });
  const form = h('form', { class: 'action', 'aria-labelledby': 'recover-title' },
    h('h3', { id: 'recover-title' }, 'Recover failed messages'),
    h('div', { class: 'field' },
      h('label', { for: 'recover-since' }, 'Since'),
      input,
      h('p', { class: 'hint', id: 'recover-hint' }, `Sends again every message since then whose delivery here failed (at most ${RECOVER_MAX_DAYS} days back).`)),
    button);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!allowed) return;
    const since = fromLocalInput(input.value);
    if (!since) {
      input.focus();
      return;
    }
    runAction(button, async () => {
      const result = await request('POST', `${page.base}/recover`, { body: { since } });
      const n = result?.recovered;
      if (n === 0) showSuccess('No failed deliveries to recover in that window.');
      else if (n === undefined) showSuccess('Recovery started.');
      else showSuccess(`Recovery started: ${n} failed ${n === 1 ? 'delivery' : 'deliveries'} queued for a new attempt.`);
      if (n) page.attempts.awaitNew().then(() => page.report.refresh());
    });
  });
  return form;
}

function sendTestForm(page) {
  const allowed = can('CreateAttempts');
  const select = h('select', { id: 'send-test-event-type', disabled: true }, h('option', { value: '' }, 'Loading…'));
  const button = actionButton('Send test event', { capability: 'CreateAttempts', type: 'submit' });
  button.disabled = true;
  const hint = h('p', { class: 'hint', id: 'send-test-hint' }, 'Sends the event type\'s first schema example to this endpoint only.');
  select.setAttribute('aria-describedby', 'send-test-hint');
  const form = h('form', { class: 'action', 'aria-labelledby': 'send-test-title' },
    h('h3', { id: 'send-test-title' }, 'Send a test event'),
    h('div', { class: 'field' }, h('label', { for: 'send-test-event-type' }, 'Event type'), select, hint),
    button);

  listAll('/api/v1/event-type', { query: { limit: 250 }, signal: page.signal })
    .then((types) => {
      const usable = types.filter((t) => !t.archived);
      if (usable.length === 0) {
        select.replaceChildren(h('option', { value: '' }, 'No event types'));
        hint.textContent = 'The event catalog is empty. Create an event type (POST /api/v1/event-type) to send test events.';
        button.title = 'The event catalog is empty';
        return;
      }
      const wanted = page.endpoint.filterTypes ?? page.endpoint.eventTypes;
      const preferred = usable.find((t) => !wanted || wanted.includes(t.name)) ?? usable[0];
      select.replaceChildren(...usable.map((t) => h('option', { value: t.name, selected: t === preferred },
        t.deprecated ? `${t.name} (deprecated)` : t.name)));
      select.disabled = !allowed;
      button.disabled = !allowed;
    })
    .catch((error) => {
      if (isQuiet(error)) return;
      select.replaceChildren(h('option', { value: '' }, 'Unavailable'));
      hint.textContent = `The event catalog could not be loaded: ${error.message}`;
    });

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!allowed || !select.value) return;
    runAction(button, async () => {
      const message = await request('POST', `${page.base}/send-example`, { body: { eventType: select.value } });
      showSuccess(`Test event sent as message ${message.id}.`);
      page.attempts.awaitNew().then(() => page.report.refresh());
    });
  });
  if (!allowed) select.title = lacking('CreateAttempts');
  return form;
}

// ---- Settings -----------------------------------------------------------

function settingsSection(page) {
  const ep = page.endpoint;
  const element = section('Settings');
  const list = (items, all) => (items && items.length ? h('ul', { class: 'chips' }, items.map((i) => h('li', {}, i))) : all);
  const health = ep.health ?? {};
  element.append(definitions([
    ['Event types', list(ep.filterTypes ?? ep.eventTypes, 'All event types')],
    ['Channels', list(ep.channels, 'All channels')],
    ['Rate limit', rateLimitText(ep.throttleRate ?? ep.rateLimit)],
    ['Signature scheme', signatureText(ep)],
    ['Retry policy', ep.retryPolicy ? retryText(ep.retryPolicy) : 'The application\'s (or the server\'s default)'],
    ['Circuit breaker', breakerText(health.breaker)],
    ['Failures in a row', String(health.consecutiveFailures ?? 0)],
    health.failingSince ? ['Failing since', time(health.failingSince)] : null,
    health.nextProbeAt ? ['Next probe', time(health.nextProbeAt)] : null,
    ['Created', time(ep.createdAt)],
    ['Updated', time(ep.updatedAt)],
  ]));
  const headers = h('div', { class: 'headers' }, h('h3', {}, 'Custom headers'), loading());
  element.append(headers);
  request('GET', `${page.base}/headers`, { signal: page.signal })
    .then((answer) => headers.replaceChildren(h('h3', {}, 'Custom headers'), headersTable(answer)))
    .catch((error) => {
      if (!isQuiet(error)) headers.replaceChildren(h('h3', {}, 'Custom headers'), h('p', { class: 'hint' }, `Could not load the headers: ${error.message}`));
    });
  return element;
}

function headersTable({ headers = {}, sensitive = [] }) {
  const names = [...Object.keys(headers), ...sensitive.filter((n) => !(n in headers))].sort();
  if (names.length === 0) return h('p', { class: 'hint' }, 'No custom headers: deliveries carry only Herald\'s own.');
  return table({
    caption: 'Custom headers sent with every delivery',
    columns: [{ label: 'Name' }, { label: 'Value' }],
    rows: names.map((name) => ({
      id: name,
      header: true,
      cells: [name, name in headers ? h('code', {}, headers[name]) : h('span', { class: 'muted' }, 'Hidden (sensitive)')],
    })),
  });
}

function rateLimitText(rate) {
  return rate == null || rate === 0 ? 'No limit' : `${rate} messages per second`;
}

const SCHEMES = {
  standard: 'Standard Webhooks (HMAC-SHA256)',
  ed25519: 'Standard Webhooks, Ed25519 (v1a)',
  stripe: 'Stripe-compatible',
  github: 'GitHub-compatible',
  shopify: 'Shopify-compatible',
  slack: 'Slack-compatible',
  hmac: 'Custom HMAC header',
};

function signatureText(ep) {
  const name = SCHEMES[ep.signatureScheme] ?? ep.signatureScheme ?? 'standard';
  const o = ep.signatureOptions;
  if (!o) return name;
  return `${name}: ${o.header}, HMAC-${(o.algorithm ?? 'sha256').toUpperCase()}, ${o.encoding ?? 'hex'}`;
}

function retryText(policy) {
  if (policy.exponential) {
    const e = policy.exponential;
    return `Exponential: ${e.maxAttempts} attempts, from ${e.initialDelay} s ×${e.multiplier} up to ${e.maxDelay} s`;
  }
  if (policy.schedule) return `${policy.schedule.length + 1} attempts, after ${policy.schedule.join(' s, ')} s`;
  return 'Custom';
}

function breakerText(state) {
  return { closed: 'Closed (delivering)', open: 'Open (deliveries wait for a probe)', halfOpen: 'Half-open (one probe decides)' }[state] ?? NONE;
}
