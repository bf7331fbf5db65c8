// How an endpoint is doing, as badges: enabled or disabled, and the circuit
// breaker when it is not closed.

import { formatDateTime } from '../format.js';
import { badge, h } from '../ui.js';

const BREAKER = { open: 'Breaker open', halfOpen: 'Breaker half-open' };

export function endpointStatus(endpoint) {
  const parts = [endpoint.disabled ? badge('Disabled', 'bad') : badge('Enabled', 'ok')];
  const health = endpoint.health;
  if (health && BREAKER[health.breaker]) {
    const title = health.nextProbeAt ? `Next probe ${formatDateTime(health.nextProbeAt)}` : null;
    parts.push(h('span', { class: 'badge badge-wait', title }, BREAKER[health.breaker]));
  }
  if (health?.consecutiveFailures > 0) {
    parts.push(badge(`${health.consecutiveFailures} failing in a row`, 'wait'));
  }
  return h('span', { class: 'status', 'data-status': endpoint.disabled ? 'disabled' : 'enabled' }, parts);
}
