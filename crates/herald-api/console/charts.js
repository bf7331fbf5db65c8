// Time-series charts with uPlot (vendor/uPlot.iife.min.js, a global loaded by
// index.html). Each chart is a <figure data-chart data-points> whose canvas
// follows the figure's width; with no points it shows what to do instead.

import { h } from './ui.js';

const EMPTY_TEXT = 'No attempts in this window — send a test event or wait for traffic';
const HEIGHT = 220;
const AXIS = { stroke: '#374151', grid: { stroke: '#e5e7eb', width: 1 }, ticks: { stroke: '#d1d5db', width: 1 } };

/** Latency percentiles (ms) of each point of a stats series. */
export function latencyChart(report, signal) {
  return chart({
    kind: 'latency',
    caption: 'Latency by attempt time (ms): p50, p95 and p99',
    report,
    signal,
    lines: [
      { label: 'p50', stroke: '#2563eb', pick: (p) => p.latencyMs?.p50 },
      { label: 'p95', stroke: '#b45309', pick: (p) => p.latencyMs?.p95 },
      { label: 'p99', stroke: '#b91c1c', pick: (p) => p.latencyMs?.p99 },
    ],
    unit: ' ms',
    range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1],
  });
}

/** The share of successful attempts (%) of each point. */
export function successChart(report, signal) {
  return chart({
    kind: 'success',
    caption: 'Success rate by attempt time (%)',
    report,
    signal,
    lines: [
      { label: 'Success rate', stroke: '#047857', fill: 'rgba(4, 120, 87, 0.12)', pick: (p) => (p.successRate == null ? null : p.successRate * 100) },
    ],
    unit: '%',
    range: () => [0, 100],
  });
}

function chart({ kind, caption, report, signal, lines, unit, range }) {
  const series = report.series ?? [];
  const figure = h('figure', { class: 'chart', 'data-chart': kind, 'data-points': String(series.length) },
    h('figcaption', {}, caption));
  if (series.length === 0 || typeof window.uPlot !== 'function') {
    figure.append(h('p', { class: 'chart-empty' },
      series.length === 0 ? EMPTY_TEXT : 'The chart library did not load; the numbers above are complete.'));
    return figure;
  }
  const plotArea = h('div', { class: 'chart-plot', role: 'img', 'aria-label': `${caption}, ${series.length} points` });
  figure.append(plotArea);

  const xs = series.map((p) => Math.floor(Date.parse(p.start) / 1000));
  const data = [xs, ...lines.map((line) => series.map((p) => line.pick(p) ?? null))];
  const since = Math.floor(Date.parse(report.since) / 1000);
  const until = Math.floor(Date.parse(report.until) / 1000);
  const format = (v) => (v == null ? '—' : `${v.toFixed(1)}${unit}`);
  const options = {
    width: 600,
    height: HEIGHT,
    scales: {
      x: { time: true, range: Number.isFinite(since) && Number.isFinite(until) && until > since ? [since, until] : undefined },
      y: { range },
    },
    series: [
      {},
      ...lines.map((line) => ({
        label: line.label, stroke: line.stroke, fill: line.fill, width: 2, spanGaps: false, points: { size: 6 }, value: (u, v) => format(v),
      })),
    ],
    axes: [
      { ...AXIS },
      { ...AXIS, size: 64, values: (u, values) => values.map((v) => `${+v.toFixed(1)}${unit}`) },
    ],
    cursor: { drag: { x: false, y: false } },
  };

  // uPlot measures its container, so it starts once the figure is in the page.
  requestAnimationFrame(() => {
    if (signal?.aborted || !plotArea.isConnected) return;
    const plot = new window.uPlot({ ...options, width: widthOf(plotArea) }, data, plotArea);
    const observer = new ResizeObserver(() => plot.setSize({ width: widthOf(plotArea), height: HEIGHT }));
    observer.observe(plotArea);
    const destroy = () => {
      observer.disconnect();
      plot.destroy();
    };
    signal?.addEventListener('abort', destroy, { once: true });
  });
  return figure;
}

function widthOf(el) {
  return Math.max(240, Math.floor(el.clientWidth));
}
