// Turning the API's values into text for people: times in the viewer's time
// zone, latencies and rates with one decimal, "—" for what is not known.

export const NONE = '—';

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const decimal1 = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

/** An ISO 8601 time as the viewer reads it, e.g. "8 Dec 2026, 10:00:00". */
export function formatDateTime(iso) {
  if (!iso) return NONE;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dateTime.format(date);
}

/** Milliseconds with one decimal: "12.3 ms". */
export function formatMs(value) {
  return isNumber(value) ? `${decimal1.format(value)} ms` : NONE;
}

/** A 0–1 fraction as a percentage with one decimal: "99.5%". */
export function formatPercent(fraction) {
  return isNumber(fraction) ? `${decimal1.format(fraction * 100)}%` : NONE;
}

export function formatCount(value) {
  return isNumber(value) ? integer.format(value) : NONE;
}

function isNumber(value) {
  return typeof value === 'number' && Number.isFinite(value);
}

/** The value of a `datetime-local` input for a Date, in the viewer's zone. */
export function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** A `datetime-local` value (viewer's zone) as ISO 8601 UTC, or null. */
export function fromLocalInput(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** Comma-separated input as a list without blanks, or null when empty. */
export function parseList(text) {
  const items = String(text ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

/** A message or attempt status (0 success, 1 pending, 2 fail, 3 sending). */
const STATUS_LABELS = { 0: 'Succeeded', 1: 'Pending', 2: 'Failed', 3: 'Sending' };
const STATUS_TEXT = { success: 0, pending: 1, fail: 2, sending: 3 };

export function statusLabel(status, statusText) {
  const code = status ?? STATUS_TEXT[statusText];
  return STATUS_LABELS[code] ?? String(statusText ?? status ?? NONE);
}

/** CSS modifier for a status: ok, wait or bad. */
export function statusTone(status) {
  return { 0: 'ok', 1: 'wait', 2: 'bad', 3: 'wait' }[status] ?? 'wait';
}
