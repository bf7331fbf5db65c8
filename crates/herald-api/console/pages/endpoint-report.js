// The endpoint page's delivery report: a 1 h / 24 h / 7 d window, its numbers
// (each with data-stat and the raw data-value), latency and success charts,
// and failures by class.

import { isQuiet, path, request } from '../api.js';
import { formatCount, formatMs, formatPercent } from '../format.js';
import { latencyChart, successChart } from '../charts.js';
import { errorState, h, loading, section, table } from '../ui.js';

export const WINDOWS = {
  '1h': { label: '1 h', ms: 3600e3, granularity: 'minute' },
  '24h': { label: '24 h', ms: 24 * 3600e3, granularity: 'hour' },
  '7d': { label: '7 d', ms: 7 * 24 * 3600e3, granularity: 'day' },
};
export const DEFAULT_WINDOW = '24h';

const FAILURE_CLASSES = [
  ['timeout', 'Timed out'],
  ['connect', 'Connection failed'],
  ['dns', 'DNS lookup failed'],
  ['tls', 'TLS handshake failed'],
  ['blocked', 'Blocked (private address)'],
  ['http3xx', 'HTTP 3xx (redirect)'],
  ['http4xx', 'HTTP 4xx'],
  ['http5xx', 'HTTP 5xx'],
  ['other', 'Other'],
];

/**
 * The report section. `onWindow(key)` is told when the viewer picks another
 * window (to keep it in the URL); returns { element, refresh }.
 */
export function reportSection({ appId, endpointId, windowKey, signal, onWindow }) {
  const element = section('Deliveries', { className: 'report' });
  const buttons = Object.entries(WINDOWS).map(([key, w]) => h('button', {
    type: 'button', class: 'segment', 'aria-pressed': String(key === windowKey), 'data-window': key,
    onClick: () => choose(key),
  }, w.label));
  const body = h('div', { class: 'report-body' });
  const picker = h('div', { class: 'window-picker', role: 'group', 'aria-label': 'Window' },
    h('span', { class: 'picker-label', 'aria-hidden': 'true' }, 'Window'), buttons);
  element.replaceChildren(h('div', { class: 'section-head' }, element.querySelector('h2'), picker), body);

  let current = windowKey;
  let charts = null;

  function choose(key) {
    if (key === current) return;
    current = key;
    for (const b of buttons) b.setAttribute('aria-pressed', String(b.dataset.window === key));
    onWindow?.(key);
    refresh();
  }

  async function refresh() {
    charts?.abort();
    charts = new AbortController();
    const chartSignal = AbortSignal.any([signal, charts.signal]);
    const key = current;
    const w = WINDOWS[key];
    const until = new Date();
    const since = new Date(until.getTime() - w.ms);
    body.setAttribute('aria-busy', 'true');
    if (!body.firstChild) body.append(loading());
    let report;
    try {
      report = await request('GET', path`/api/v1/app/${appId}/endpoint/${endpointId}/stats/report`, {
        query: { since: since.toISOString(), until: until.toISOString(), granularity: w.granularity },
        signal: chartSignal,
      });
    } catch (error) {
      if (isQuiet(error) || chartSignal.aborted) return;
      body.removeAttribute('aria-busy');
      body.replaceChildren(errorState(error, refresh, 'the delivery report'));
      return;
    }
    if (key !== current || chartSignal.aborted) return;
    body.removeAttribute('aria-busy');
    body.replaceChildren(
      summary(report),
      h('div', { class: 'charts' }, latencyChart(report, chartSignal), successChart(report, chartSignal)),
      failures(report));
  }

  refresh();
  return { element, refresh };
}

function stat(label, name, value, text) {
  return h('div', { class: 'stat' },
    h('dt', {}, label),
    h('dd', { 'data-stat': name, 'data-value': value ?? '' }, text));
}

function summary(report) {
  const latency = report.latencyMs ?? {};
  return h('dl', { class: 'stats' },
    stat('Attempts', 'attempts', report.attempts, formatCount(report.attempts)),
    stat('Success rate', 'successRate', report.successRate, formatPercent(report.successRate)),
    stat('p50 latency', 'p50', latency.p50, formatMs(latency.p50)),
    stat('p95 latency', 'p95', latency.p95, formatMs(latency.p95)),
    stat('p99 latency', 'p99', latency.p99, formatMs(latency.p99)));
}

function failures(report) {
  const counts = report.failuresByClass ?? {};
  const wrap = h('div', { class: 'failures' }, h('h3', {}, 'Failures by class'));
  if (!report.failures) {
    wrap.append(h('p', { class: 'hint' }, report.attempts ? 'No failed attempts in this window.' : 'No attempts in this window.'));
    return wrap;
  }
  wrap.append(table({
    caption: 'Failed attempts by class',
    columns: [{ label: 'Class' }, { label: 'Failed attempts', numeric: true }],
    rows: FAILURE_CLASSES.filter(([key]) => counts[key] > 0).map(([key, label]) => ({
      id: key,
      header: true,
      cells: [label, h('span', { 'data-value': counts[key] }, formatCount(counts[key]))],
    })),
  }));
  return wrap;
}
