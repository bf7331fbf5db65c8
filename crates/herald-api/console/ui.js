// Building the DOM safely (text is always text: no innerHTML with data) and
// the pieces every page shares: tables, loading, empty and error states, the
// alert region, capability-gated buttons and a confirmation dialog.

import { ApiError, can, isQuiet } from './api.js';
import { formatDateTime } from './format.js';

/**
 * `h('a', { href: '#/', class: 'x', 'data-id': id, onClick }, 'text', child)`.
 * Attributes named on… become listeners; `hidden`, `disabled`, `value`,
 * `checked`, `selected` and `open` are set as properties; null/false children
 * and attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'style') throw new Error('inline styles are refused by the CSP: use a class');
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (['hidden', 'disabled', 'checked', 'selected', 'open', 'required'].includes(key)) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Like el.replaceChildren, but skipping null/false as h() does. */
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** A `<time>` with the full ISO time in `datetime` and the viewer's local text. */
export function time(iso) {
  if (!iso) return '—';
  return h('time', { datetime: iso }, formatDateTime(iso));
}

export function link(target, ...children) {
  return h('a', { href: target }, ...children);
}

let headingCounter = 0;

/** A <section> named by its h2; append the content to it. */
export function section(title, { className = '' } = {}) {
  const id = `section-${++headingCounter}`;
  const section = h('section', { class: `panel ${className}`.trim(), 'aria-labelledby': id });
  section.append(h('h2', { id }, title));
  return section;
}

/**
 * A table of objects: columns are `{ label, numeric? }`, rows are
 * `{ id, cells: [...] }`; each row carries `data-id`. The caption names the
 * table for assistive technology (visually hidden unless `showCaption`).
 */
export function table({ caption, columns, rows, showCaption = false }) {
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('caption', { class: showCaption ? null : 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, columns.map((c) =>
        h('th', { scope: 'col', class: c.numeric ? 'num' : null }, c.label)))),
      h('tbody', {}, rows.map((row) => tableRow(columns, row)))));
}

export function tableRow(columns, row) {
  return h('tr', { 'data-id': row.id, ...(row.attrs ?? {}) }, row.cells.map((cell, i) => {
    if (i === 0 && row.header) return h('th', { scope: 'row' }, cell);
    return h('td', { class: columns[i]?.numeric ? 'num' : null }, cell);
  }));
}

/** The aria-busy region shown while a page or part of it loads. */
export function loading(label = 'Loading…') {
  return h('div', { class: 'loading', 'aria-busy': 'true', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
}

/** What is missing and what to do next, with optional actions. */
export function emptyState(message, ...actions) {
  return h('div', { class: 'empty' }, h('p', {}, message), actions.length ? h('div', { class: 'actions' }, actions) : null);
}

/** A load that failed: the API's detail, and a way to try again. */
export function errorState(error, retry, what = 'this page') {
  // Trying again cannot help what is missing or forbidden: offer a way out instead.
  const final = error instanceof ApiError && (error.status === 403 || error.status === 404);
  return h('div', { class: 'error-state', role: 'alert' },
    h('p', {}, h('strong', {}, `Could not load ${what}. `), messageOf(error)),
    final
      ? h('a', { href: '#/' }, 'Go to the start page')
      : retry ? h('button', { type: 'button', class: 'button', onClick: retry }, 'Try again') : null);
}

export function messageOf(error) {
  if (error instanceof ApiError) return error.message;
  return error?.message ? String(error.message) : 'Something went wrong.';
}

const alertRegion = () => document.getElementById('alert');
const statusRegion = () => document.getElementById('status');

/** Shows an error (for example a 403's detail) in the page's alert region. */
export function showError(error) {
  if (isQuiet(error)) return;
  const text = typeof error === 'string' ? error : messageOf(error);
  statusRegion()?.replaceChildren();
  alertRegion()?.replaceChildren(h('p', {}, text));
}

/** Confirms an action that worked, in the page's status region. */
export function showSuccess(text) {
  alertRegion()?.replaceChildren();
  statusRegion()?.replaceChildren(h('p', {}, text));
}

export function clearNotices() {
  alertRegion()?.replaceChildren();
  statusRegion()?.replaceChildren();
}

// The regions stay in the page (so that screen readers announce what is put
// in them); their close buttons empty them.
document.addEventListener('click', (event) => {
  const target = event.target.closest?.('[data-dismiss]');
  if (target) document.getElementById(target.dataset.dismiss)?.replaceChildren();
});

/**
 * A button for an action that needs a capability. Without it the button is
 * disabled and its title says why; `hideWithout` leaves it out instead.
 */
export function actionButton(label, { capability, onClick, className = 'button', hideWithout = false, type = 'button' }) {
  const allowed = !capability || can(capability);
  if (!allowed && hideWithout) return null;
  return h('button', {
    type,
    class: className,
    disabled: !allowed,
    title: allowed ? null : lacking(capability),
    'data-capability': capability ?? null,
    onClick: allowed && onClick ? onClick : null,
  }, label);
}

export function lacking(capability) {
  return `Not available: this session does not have the ${capability} capability`;
}

/**
 * Runs an action from a button: disables it meanwhile, shows the API's
 * detail on failure. Resolves to the action's result, or undefined on failure.
 */
export async function runAction(button, action) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

/**
 * Asks before something that cannot be undone, in a modal <dialog>.
 * Resolves to true when `confirmLabel` is chosen.
 */
export function confirmDialog({ title, message, confirmLabel }) {
  return new Promise((resolve) => {
    const titleId = `dialog-${++headingCounter}`;
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': titleId },
      h('form', { method: 'dialog' },
        h('h2', { id: titleId }, title),
        h('p', {}, message),
        h('div', { class: 'actions' },
          h('button', { type: 'submit', value: 'cancel', class: 'button' }, 'Cancel'),
          h('button', { type: 'submit', value: 'confirm', class: 'button button-danger' }, confirmLabel))));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'confirm');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A `<dl>` from [term, description] pairs (descriptions may be nodes). */
export function definitions(pairs, className = 'facts') {
  return h('dl', { class: className }, pairs.filter(Boolean).map(([term, value]) =>
    h('div', {}, h('dt', {}, term), h('dd', {}, value))));
}

/** A small coloured label: tone is ok, wait, bad or neutral. */
export function badge(text, tone = 'neutral') {
  return h('span', { class: `badge badge-${tone}` }, text);
}

/** Pretty JSON in a <pre> that keyboard users can scroll (so it needs a name). */
export function jsonBlock(value, label) {
  return h('pre', { class: 'json', tabindex: '0', role: 'region', 'aria-label': label }, JSON.stringify(value, null, 2));
}

/** Re-runs `check` every `intervalMs` until it returns true or `timeoutMs` passes. */
export async function poll(check, { intervalMs = 1000, timeoutMs = 10000, signal } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
    if (signal?.aborted) return false;
    if (await check()) return true;
  }
  return false;
}
