// The web console and the app portal in a real browser, end to end: the
// system's Chromium driven by playwright-core (no browser is ever downloaded)
// against a running Herald, with axe-core judging each page's accessibility.
// Run by tests/tests/console.rs, which starts Herald (with the worker and
// stats roles) and a receiver, and reads what this prints:
//
//   HERALD_URL           the server, e.g. http://127.0.0.1:41234
//   HERALD_TOKEN         a tenant API key (hsk_…)
//   HERALD_RECEIVER_URL  a URL that answers every POST with a 2xx
//   HERALD_ARTIFACTS     a directory for the screenshots (created)
//   HERALD_CHROMIUM      the browser (default /usr/bin/chromium)
//   HERALD_UPDATE_SCREENSHOT=1 and HERALD_SCREENSHOT_PATH: also save the
//                        endpoint page's screenshot there (the README's)
//
// It prints `step: …` as it goes, `deliveries: N` (what the receiver must
// have got), and `console: ok` last; on any failure it prints what failed
// and the page it was on, saves failure.png, and exits 1.

import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`console.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const BASE = required('HERALD_URL').replace(/\/+$/, '');
const KEY = required('HERALD_TOKEN');
const RECEIVER_URL = required('HERALD_RECEIVER_URL');
const ARTIFACTS = required('HERALD_ARTIFACTS');
const CHROMIUM = process.env.HERALD_CHROMIUM || '/usr/bin/chromium';
const README_SCREENSHOT =
  process.env.HERALD_UPDATE_SCREENSHOT === '1' ? process.env.HERALD_SCREENSHOT_PATH : undefined;

/** Longest the whole script may run before it gives up (with failure.png). */
const SCRIPT_LIMIT_MS = 270_000;
/** Longest one browser action or wait may take. */
const ACTION_LIMIT_MS = 15_000;

const CAPABILITIES = [
  'ViewBase',
  'ViewEndpointSecret',
  'ManageEndpointSecret',
  'ManageEndpoint',
  'CreateAttempts',
];

/** Fails unless `capabilities` has every one of [`CAPABILITIES`] (Svix's
 * list has more, such as ManageTransformations, which Herald accepts). */
function assertEvery(capabilities, what) {
  const missing = CAPABILITIES.filter((c) => !capabilities?.includes(c));
  check(missing.length === 0, `${what} lacks ${missing.join(', ')}: ${show(capabilities)}`);
}

// --- assertions and waiting ---------------------------------------------

class Failure extends Error {}

function fail(what) {
  throw new Failure(what);
}

function check(condition, what) {
  if (!condition) fail(what);
}

const show = (value) => JSON.stringify(value);

function equal(actual, expected, what) {
  if (show(actual) !== show(expected)) {
    fail(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Calls `probe` until it returns something truthy (which is returned), for at
 * most `timeout` ms; on timeout fails with `what` and what `describe` says of
 * the last state.
 */
async function until(what, probe, { timeout = ACTION_LIMIT_MS, interval = 200, describe } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) {
      const last = describe ? `; last seen: ${await describe()}` : '';
      fail(`timed out after ${timeout / 1000} s waiting for ${what}${last}`);
    }
    await sleep(interval);
  }
}

function step(what) {
  console.log(`step: ${what}`);
}

// --- the API, with the tenant key ----------------------------------------

async function api(method, path, body, token = KEY) {
  const headers = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(BASE + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: response.status, body: parsed };
}

/** `api`, failing unless the answer has status `expected`; its body. */
async function apiOk(method, path, body, expected = 200) {
  const reply = await api(method, path, body);
  if (reply.status !== expected) {
    fail(`${method} ${path} answered ${reply.status} (expected ${expected}): ${show(reply.body)}`);
  }
  return reply.body;
}

// --- the browser -------------------------------------------------------------

/** Console errors, uncaught exceptions, CSP violations and unexpected failed requests. */
const problems = [];
/** Serious and critical accessibility violations, by page. */
const violations = [];
/** The page a failure is shown on. */
let current;

/** Runs in every page before its own scripts: CSP violations become console errors. */
function reportCspViolations() {
  document.addEventListener(
    'securitypolicyviolation',
    (e) =>
      console.error(
        `CSP violation: ${e.violatedDirective} refused ${e.blockedURI || '(inline)'} ` +
          `at ${e.sourceFile}:${e.lineNumber}`,
      ),
    true,
  );
}

/**
 * Records everything that goes wrong in `page` into `problems`. A response
 * of 400 or more is a problem unless the test expects it: `page.expected`
 * holds `{method, path: RegExp, status}` entries it adds before provoking one.
 */
function watch(page, label) {
  page.expected = [];
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    // The browser's note of an error status: judged with the response below.
    if (/^Failed to load resource: the server responded with a status of \d+/.test(text)) return;
    const at = message.location();
    problems.push(`${label}: console error: ${text} (${at.url}:${at.lineNumber})`);
  });
  page.on('pageerror', (error) =>
    problems.push(`${label}: uncaught exception: ${error.stack || error}`),
  );
  page.on('response', (response) => {
    const status = response.status();
    if (status < 400) return;
    const request = response.request();
    const url = new URL(response.url());
    const expected = page.expected.some(
      (e) => e.status === status && e.method === request.method() && e.path.test(url.pathname),
    );
    if (!expected) {
      problems.push(`${label}: unexpected ${status} for ${request.method()} ${url.pathname}${url.search}`);
    }
  });
  page.on('requestfailed', (request) => {
    const error = request.failure()?.errorText ?? 'failed';
    // A navigation cancels the previous page's requests: not a fault.
    if (error === 'net::ERR_ABORTED') return;
    problems.push(`${label}: request failed: ${request.method()} ${request.url()}: ${error}`);
  });
}

let browser;

async function newPage(label) {
  const context = await browser.newContext({
    baseURL: BASE,
    viewport: { width: 1280, height: 900 },
  });
  context.setDefaultTimeout(ACTION_LIMIT_MS);
  await context.addInitScript(reportCspViolations);
  const page = await context.newPage();
  watch(page, label);
  current = page;
  return page;
}

async function screenshot(page, name) {
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Runs axe-core in `page`; its serious and critical violations go into `violations`. */
async function accessibility(page, name) {
  const loaded = await page.evaluate(() => typeof window.axe === 'object');
  if (!loaded) {
    // Evaluated through the DevTools protocol, which the page's CSP
    // (script-src 'self') does not apply to; a <script> tag would be refused.
    await page.evaluate(AXE_SOURCE);
  }
  const { rules, found } = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return {
      rules: result.passes.length + result.violations.length + result.incomplete.length,
      found: result.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
      })),
    };
  });
  check(rules > 0, `axe checked no rule on the ${name} page`);
  console.log(`axe: ${name}: ${found.length} violation(s) of ${rules} applicable rule(s)`);
  for (const v of found) {
    const where = v.nodes.map((n) => `\n      ${n.target}: ${n.summary?.replace(/\n\s*/g, ' ')}`);
    const line = `${name}: ${v.impact} ${v.id} (${v.help}) on ${v.nodes.length} node(s):${where.join('')}`;
    if (v.impact === 'serious' || v.impact === 'critical') {
      violations.push(line);
    } else {
      console.log(`note: axe ${line}`);
    }
  }
}

/** `fetch` from inside `page`: with its session cookie, as its own scripts call. */
async function fetchInPage(page, method, path, { csrf, body } = {}) {
  return page.evaluate(
    async ({ method, path, csrf, body }) => {
      const headers = {};
      if (csrf !== undefined) headers['X-Herald-Csrf'] = csrf;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      let parsed = null;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        parsed = text;
      }
      return { status: response.status, body: parsed };
    },
    { method, path, csrf, body },
  );
}

/** The session the page's cookie opens (`GET /console/api/session`). */
async function session(page) {
  const reply = await fetchInPage(page, 'GET', '/console/api/session');
  equal(reply.status, 200, 'GET /console/api/session with the cookie');
  return reply.body;
}

const mainNav = (page) => page.getByRole('navigation', { name: 'Main', exact: true });
const appNav = (page) => page.getByRole('navigation', { name: 'Application', exact: true });
const row = (page, id) => page.locator(`tr[data-id="${id}"]`);

/** Opens the object of row `id` (its first link). */
async function openRow(page, id) {
  await row(page, id).getByRole('link').first().click();
}

/** The `data-id`s of the rows matching `selector`, in order. */
async function rowIds(page, selector) {
  return page.locator(selector).evaluateAll((rows) => rows.map((r) => r.dataset.id));
}

/** Sets a form field whatever control it is (an input, or a select). */
async function setField(field, value) {
  const tag = await field.evaluate((element) => element.tagName);
  if (tag === 'SELECT') {
    await field.selectOption(value);
  } else {
    await field.fill(value);
  }
}

/** Fails unless every button named `name` in `page` is absent or disabled. */
async function assertUnavailable(page, name, why) {
  const buttons = page.getByRole('button', { name, exact: true });
  const count = await buttons.count();
  for (let i = 0; i < count; i++) {
    check(await buttons.nth(i).isDisabled(), `"${name}" is offered and enabled ${why}`);
  }
}

/** The page's visible text (to prove some data is not on it). */
const pageText = (page) => page.locator('body').innerText();

/** Nothing that could authenticate is kept in the page's storage or URL. */
async function assertNoCredentialIn(page, secret, what) {
  const kept = await page.evaluate(() =>
    JSON.stringify([
      location.href,
      document.cookie,
      Object.entries(localStorage),
      Object.entries(sessionStorage),
    ]),
  );
  check(!kept.includes(secret), `${what} is kept in the page's URL, cookies or storage: ${kept}`);
  check(!(await page.content()).includes(secret), `${what} is in the page's DOM`);
}

// --- the test ------------------------------------------------------------------

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu'],
    headless: true,
  });
  console.log(`browser: Chromium ${browser.version()} (${CHROMIUM})`);

  step('an application, another one, event types through the API');
  const app = await apiOk('POST', '/api/v1/app', { name: 'Acme storefront' }, 201);
  const other = await apiOk('POST', '/api/v1/app', { name: 'Umbrella private app' }, 201);
  const otherEndpoint = await apiOk(
    'POST',
    `/api/v1/app/${other.id}/endpoint`,
    { url: 'https://umbrella.example/hooks/private-endpoint', disabled: true },
    201,
  );
  const otherMessage = await apiOk(
    'POST',
    `/api/v1/app/${other.id}/msg`,
    { eventType: 'order.created', payload: { umbrella: true } },
    202,
  );
  const eventTypes = ['order.created', 'order.shipped'];
  for (const name of eventTypes) {
    await apiOk('POST', '/api/v1/event-type', { name, description: `When an ${name.replace('.', ' is ')}` }, 201);
  }

  // a. Sign in with the tenant key.
  step('sign in with the tenant API key');
  const page = await newPage('tenant');
  // Before signing in, and after signing out, there is no session.
  page.expected.push({ method: 'GET', path: /^\/console\/api\/session$/, status: 401 });
  const landing = await page.goto('/console');
  equal(landing.status(), 200, 'GET /console');
  const headers = landing.headers();
  const csp = headers['content-security-policy'] ?? '';
  check(csp.includes("default-src 'none'"), `the console's CSP is not strict: ${show(csp)}`);
  check(/frame-ancestors 'none'/.test(csp), `the console's CSP lets any page frame it: ${show(csp)}`);
  equal(headers['x-content-type-options'], 'nosniff', 'X-Content-Type-Options of /console');
  equal(headers['referrer-policy'], 'no-referrer', 'Referrer-Policy of /console');
  check(/no-store|no-cache/.test(headers['cache-control'] ?? ''), `/console may be cached: ${show(headers['cache-control'])}`);
  const keyInput = page.getByLabel('Tenant API key', { exact: true });
  await keyInput.waitFor();
  await screenshot(page, 'sign-in.png');
  await accessibility(page, 'sign-in');
  await keyInput.fill(KEY);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await row(page, app.id).waitFor();
  page.expected = [];
  for (const link of ['Applications', 'Event types']) {
    await mainNav(page).getByRole('link', { name: link, exact: true }).waitFor();
  }
  await mainNav(page).getByText('Sign out', { exact: true }).waitFor();
  await assertNoCredentialIn(page, KEY, 'the tenant key');
  const cookie = (await page.context().cookies()).find((c) => c.name === 'herald_console');
  check(cookie, 'signing in set no herald_console cookie');
  check(cookie.httpOnly, 'the session cookie is not HttpOnly');
  equal(cookie.sameSite, 'Strict', 'the session cookie SameSite');
  equal(cookie.path, '/', 'the session cookie Path');
  const tenantSession = await session(page);
  equal(tenantSession.scope, 'tenant', 'a tenant key session scope');
  assertEvery(tenantSession.capabilities, 'a tenant key session');
  check(typeof tenantSession.csrfToken === 'string' && tenantSession.csrfToken.length > 0, 'the session has no csrfToken');
  await screenshot(page, 'apps.png');
  await accessibility(page, 'applications');

  // b. Add an endpoint in the browser.
  step('add an endpoint');
  await openRow(page, app.id);
  await appNav(page).getByRole('link', { name: 'Endpoints', exact: true }).click();
  await page.getByRole('button', { name: 'Add endpoint', exact: true }).click();
  await page.getByLabel('URL', { exact: true }).fill(RECEIVER_URL);
  await page.getByLabel('Description', { exact: true }).fill('The console test receiver');
  await page.getByRole('button', { name: 'Create endpoint', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: RECEIVER_URL, exact: true }).waitFor();
  const endpoints = await apiOk('GET', `/api/v1/app/${app.id}/endpoint`);
  equal(
    endpoints.data.map((e) => [e.url, e.description]),
    [[RECEIVER_URL, 'The console test receiver']],
    'the endpoints of the application after "Create endpoint"',
  );
  const ep = endpoints.data[0];
  await appNav(page).getByRole('link', { name: 'Endpoints', exact: true }).click();
  await row(page, ep.id).waitFor();
  await screenshot(page, 'endpoints.png');
  await accessibility(page, 'endpoints');

  // c. Messages, delivered, listed and filtered.
  step('post messages and list them');
  const posted = [];
  for (const [i, eventType] of ['order.created', 'order.shipped', 'order.created'].entries()) {
    const message = await apiOk('POST', `/api/v1/app/${app.id}/msg`, { eventType, payload: { order: i + 1 } }, 202);
    posted.push({ id: message.id, eventType });
  }
  let delivered = posted.length;
  const attemptsOf = async (path) => (await apiOk('GET', path)).data;
  await until(
    'every message delivered',
    async () => {
      const attempts = await attemptsOf(`/api/v1/app/${app.id}/attempt/endpoint/${ep.id}`);
      const succeeded = new Set(attempts.filter((a) => a.status === 0).map((a) => a.msgId));
      return posted.every((m) => succeeded.has(m.id));
    },
    {
      timeout: 60_000,
      describe: async () => show(await attemptsOf(`/api/v1/app/${app.id}/attempt/endpoint/${ep.id}`)),
    },
  );
  await appNav(page).getByRole('link', { name: 'Messages', exact: true }).click();
  for (const message of posted) {
    await row(page, message.id).waitFor();
  }
  check(!(await pageText(page)).includes(otherMessage.id), "the other application's message is listed");
  await screenshot(page, 'messages.png');
  await accessibility(page, 'messages');
  const shipped = posted.find((m) => m.eventType === 'order.shipped');
  await setField(page.getByLabel('Event type', { exact: true }), 'order.shipped');
  await page.getByRole('button', { name: 'Apply filters', exact: true }).click();
  const messageRows = 'tr[data-id^="msg_"]';
  await until(
    'the messages filtered by event type order.shipped',
    async () => show(await rowIds(page, messageRows)) === show([shipped.id]),
    { describe: async () => show(await rowIds(page, messageRows)) },
  );
  await screenshot(page, 'messages-filtered.png');

  // d. The endpoint page's numbers are the stats API's.
  step('the endpoint page shows the stats report');
  const reportPath = `/api/v1/app/${app.id}/endpoint/${ep.id}/stats/report`;
  await until(
    `the stats report counting ${delivered} attempts`,
    async () => (await apiOk('GET', reportPath)).attempts === delivered,
    { timeout: 60_000, describe: async () => show(await apiOk('GET', reportPath)) },
  );
  await appNav(page).getByRole('link', { name: 'Endpoints', exact: true }).click();
  await openRow(page, ep.id);
  await page.getByRole('heading', { level: 1, name: RECEIVER_URL, exact: true }).waitFor();
  await page.locator('[data-stat="attempts"]').waitFor();
  // Loaded afresh, now that the stats are complete (and no earlier report
  // is still on its way).
  const isReport = (response) =>
    new URL(response.url()).pathname === reportPath && response.request().method() === 'GET';
  const reportFetched = page.waitForResponse(isReport);
  await page.reload();
  const pageReport = await (await reportFetched).json();
  const window24h = Date.parse(pageReport.until) - Date.parse(pageReport.since);
  equal(window24h, 24 * 3600 * 1000, "the endpoint page's default window (ms)");
  equal(
    await page.getByRole('button', { name: '24 h', exact: true }).getAttribute('aria-pressed'),
    'true',
    'aria-pressed of "24 h"',
  );
  const directReport = await apiOk('GET', reportPath);
  equal(pageReport.attempts, delivered, 'attempts in the report the page fetched');
  equal(directReport.attempts, pageReport.attempts, 'attempts in the report, straight from the API');
  await assertSummary(page, pageReport, '24 h');
  await screenshot(page, 'endpoint.png');
  if (README_SCREENSHOT) {
    mkdirSync(dirname(README_SCREENSHOT), { recursive: true });
    // The top of the page (summary, charts, the first attempts): what a
    // README can show at a readable size.
    await page.screenshot({ path: README_SCREENSHOT });
    console.log(`screenshot: ${README_SCREENSHOT}`);
  }
  await accessibility(page, 'endpoint');
  const hourFetched = page.waitForResponse(isReport);
  await page.getByRole('button', { name: '1 h', exact: true }).click();
  const hourReport = await (await hourFetched).json();
  equal(Date.parse(hourReport.until) - Date.parse(hourReport.since), 3600 * 1000, 'the "1 h" window (ms)');
  equal(hourReport.attempts, delivered, 'attempts in the last hour');
  await assertSummary(page, hourReport, '1 h');
  equal(
    await page.getByRole('button', { name: '24 h', exact: true }).getAttribute('aria-pressed'),
    'false',
    'aria-pressed of "24 h" once "1 h" is chosen',
  );

  // e. Resend from the message page.
  step('resend a message');
  await appNav(page).getByRole('link', { name: 'Messages', exact: true }).click();
  await openRow(page, shipped.id);
  // Attempts are rows of a table, or items of a list (the message page's).
  const attemptRows = '[data-id^="atmpt_"]';
  const apiAttempts = async () =>
    (await attemptsOf(`/api/v1/app/${app.id}/attempt/msg/${shipped.id}`)).map((a) => a.id);
  const before = await apiAttempts();
  equal(before.length, 1, `attempts of ${shipped.id} before the resend`);
  check(before[0].startsWith('atmpt_'), `an attempt id without the atmpt_ prefix: ${before[0]}`);
  await until(
    'the attempt row of the message',
    async () => show(await rowIds(page, attemptRows)) === show(before),
    { describe: async () => show(await rowIds(page, attemptRows)) },
  );
  // An attempt opens to the request's and response's headers, as the API has them.
  const [attempt] = await attemptsOf(`/api/v1/app/${app.id}/attempt/msg/${shipped.id}`);
  const item = page.locator(`[data-id="${attempt.id}"]`);
  await item.locator('summary').click();
  const requestHeaders = item.getByRole('table', { name: `Request headers of attempt ${attempt.id}` });
  await requestHeaders.waitFor();
  for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
    const row = requestHeaders.getByRole('row', { name: new RegExp(`^${name}\\b`) });
    equal(
      (await row.getByRole('cell').innerText()).trim(),
      attempt.requestHeaders[name],
      `the ${name} request header shown`,
    );
  }
  await item.getByRole('table', { name: `Response headers of attempt ${attempt.id}` }).waitFor();
  await screenshot(page, 'message.png');
  await accessibility(page, 'message');
  const resend = page.getByRole('button', { name: /^Resend\b/ });
  equal(await resend.count(), 1, 'Resend buttons on the page of a message sent to one endpoint');
  await resend.click();
  delivered += 1;
  await until(
    'a second attempt row after "Resend"',
    async () => (await page.locator(attemptRows).count()) === 2,
    { timeout: 30_000, describe: async () => show(await rowIds(page, attemptRows)) },
  );
  const after = await attemptsOf(`/api/v1/app/${app.id}/attempt/msg/${shipped.id}`);
  equal(after.length, 2, `attempts of ${shipped.id} after the resend`);
  equal(after.filter((a) => a.triggerType === 1).length, 1, 'manual attempts after the resend');
  equal(
    [...(await rowIds(page, attemptRows))].sort(),
    after.map((a) => a.id).sort(),
    "the message page's attempt rows",
  );
  await screenshot(page, 'message-resent.png');

  // f. The event catalog.
  step('the event types page');
  await mainNav(page).getByRole('link', { name: 'Event types', exact: true }).click();
  for (const name of eventTypes) {
    await row(page, name).waitFor();
  }
  await screenshot(page, 'event-types.png');
  await accessibility(page, 'event types');

  // h. A change by the cookie alone, without the CSRF header, is refused.
  step('CSRF');
  page.expected.push({ method: 'POST', path: /^\/api\/v1\/app$/, status: 403 });
  for (const csrf of [undefined, 'not-the-token']) {
    const refused = await fetchInPage(page, 'POST', '/api/v1/app', { csrf, body: { name: 'CSRF probe' } });
    equal(refused.status, 403, `POST /api/v1/app with the cookie and X-Herald-Csrf ${show(csrf)}`);
    equal(refused.body?.code, 'csrf_failed', `the code of that refusal (${show(refused.body)})`);
  }
  const apps = await apiOk('GET', '/api/v1/app?limit=250');
  check(!apps.data.some((a) => a.name === 'CSRF probe'), 'an application was created without the CSRF header');
  page.expected = [];

  // g. The app portal, with every capability ...
  step('the app portal');
  const portalAccess = await apiOk('POST', `/api/v1/auth/app-portal-access/${app.id}`, {});
  const portalUrl = new URL(portalAccess.url);
  equal(portalUrl.origin + portalUrl.pathname, `${BASE}/console`, 'the app portal URL without its fragment');
  check(portalUrl.hash.startsWith('#token='), `the app portal URL carries no #token=: ${portalAccess.url}`);
  const portal = await newPage('portal');
  // A fresh browser first asks whether it already has a session: it has none.
  portal.expected.push({ method: 'GET', path: /^\/console\/api\/session$/, status: 401 });
  await portal.goto(portalAccess.url);
  await until('the token gone from the address bar', async () => !portal.url().includes('token='), {
    describe: async () => portal.url(),
  });
  await appNav(portal).getByRole('link', { name: 'Endpoints', exact: true }).click();
  await row(portal, ep.id).waitFor();
  check(!portal.url().includes('token='), `the token is back in the address bar: ${portal.url()}`);
  await assertNoCredentialIn(portal, portalAccess.token, 'the portal token');
  equal(
    await mainNav(portal).getByRole('link', { name: 'Applications', exact: true }).count(),
    0,
    'links to the tenant\'s applications in the portal',
  );
  const portalSession = await session(portal);
  equal(
    [portalSession.scope, portalSession.appId, portalSession.readOnly],
    ['app', app.id, false],
    'the portal session (scope, appId, readOnly)',
  );
  assertEvery(portalSession.capabilities, 'a portal session of a token issued without a list');
  const secret = await apiOk('GET', `/api/v1/app/${app.id}/endpoint/${ep.id}/secret`);
  const portalSecret = await fetchInPage(portal, 'GET', `/api/v1/app/${app.id}/endpoint/${ep.id}/secret`);
  equal(portalSecret.body, secret, 'the secret as the full portal session reads it');
  await screenshot(portal, 'portal.png');
  await accessibility(portal, 'portal');

  // A portal link opened over the tenant's own session asks before it
  // replaces that session; declining keeps it.
  step('a portal link over a tenant session asks first');
  await page.goto(portalAccess.url);
  const ask = page.getByRole('dialog', { name: 'Open the app portal?' });
  await ask.waitFor();
  await ask.getByRole('button', { name: 'Cancel' }).click();
  await mainNav(page).getByRole('link', { name: 'Applications', exact: true }).waitFor();
  equal((await session(page)).scope, 'tenant', 'the session after declining a portal link');
  await until('the declined token gone from the address bar', async () => !page.url().includes('token='), {
    describe: async () => page.url(),
  });

  // ... sees its application only.
  step('the portal cannot open another application');
  const otherPath = new RegExp(`^/api/v1/app/${other.id}(/|$)`);
  portal.expected.push({ method: 'GET', path: otherPath, status: 404 });
  const refusedOther = portal.waitForResponse(
    (r) => otherPath.test(new URL(r.url()).pathname) && r.request().method() === 'GET',
  );
  await portal.goto(`${BASE}/console#/app/${other.id}`);
  equal((await refusedOther).status(), 404, "the API's answer for the other application");
  await portal.getByRole('heading', { name: 'Application not found', level: 1 }).waitFor();
  const shown = await pageText(portal);
  for (const [what, value] of [
    ['name', other.name],
    ["endpoint's URL", otherEndpoint.url],
    ["endpoint's id", otherEndpoint.id],
    ["message's id", otherMessage.id],
  ]) {
    check(!shown.includes(value), `the portal shows the other application's ${what} (${value})`);
  }
  await screenshot(portal, 'portal-not-found.png');
  await portal.context().close();

  // g. A read-only portal: no action offered, and the API refuses them.
  step('a read-only app portal');
  const readOnlyAccess = await apiOk('POST', `/api/v1/auth/app-portal-access/${app.id}`, { readOnly: true });
  const readOnly = await newPage('read-only portal');
  // A fresh browser first asks whether it already has a session: it has none.
  readOnly.expected.push({ method: 'GET', path: /^\/console\/api\/session$/, status: 401 });
  await readOnly.goto(readOnlyAccess.url);
  await until('the token gone from the address bar', async () => !readOnly.url().includes('token='), {
    describe: async () => readOnly.url(),
  });
  const readOnlySession = await session(readOnly);
  equal(
    [readOnlySession.scope, readOnlySession.appId, readOnlySession.readOnly, readOnlySession.capabilities],
    ['app', app.id, true, ['ViewBase']],
    'the read-only portal session (scope, appId, readOnly, capabilities)',
  );
  await appNav(readOnly).getByRole('link', { name: 'Endpoints', exact: true }).click();
  await row(readOnly, ep.id).waitFor();
  await assertUnavailable(readOnly, 'Add endpoint', 'to a read-only session');
  await openRow(readOnly, ep.id);
  await readOnly.getByRole('heading', { level: 1, name: RECEIVER_URL, exact: true }).waitFor();
  // Rendered: the summary is there, so the actions would be too.
  await readOnly.locator('[data-stat="attempts"]').waitFor();
  await readOnly.getByRole('button', { name: '24 h', exact: true }).waitFor();
  for (const action of [
    'Reveal secret',
    'Rotate secret',
    'Disable endpoint',
    'Recover failed messages',
    'Send test event',
  ]) {
    await assertUnavailable(readOnly, action, 'to a read-only session');
  }
  await screenshot(readOnly, 'portal-read-only-endpoint.png');
  await accessibility(readOnly, 'read-only portal endpoint');
  await appNav(readOnly).getByRole('link', { name: 'Messages', exact: true }).click();
  await openRow(readOnly, shipped.id);
  await until(
    'the attempt rows in the read-only portal',
    async () => (await readOnly.locator(attemptRows).count()) === 2,
    { describe: async () => show(await rowIds(readOnly, attemptRows)) },
  );
  await assertUnavailable(readOnly, /^Resend\b/, 'to a read-only session');
  await screenshot(readOnly, 'portal-read-only-message.png');

  const attemptsBefore = await apiAttempts();
  const endpointPath = `/api/v1/app/${app.id}/endpoint/${ep.id}`;
  const resendPath = `/api/v1/app/${app.id}/msg/${shipped.id}/endpoint/${ep.id}/resend`;
  readOnly.expected.push(
    { method: 'POST', path: new RegExp(`^${endpointPath}/secret/rotate$`), status: 403 },
    { method: 'POST', path: new RegExp(`^${resendPath}$`), status: 403 },
    { method: 'GET', path: new RegExp(`^${endpointPath}/secret$`), status: 403 },
  );
  for (const [method, path, body] of [
    ['POST', `${endpointPath}/secret/rotate`, {}],
    ['POST', resendPath, {}],
    ['GET', `${endpointPath}/secret`, undefined],
  ]) {
    const csrf = method === 'GET' ? undefined : readOnlySession.csrfToken;
    const refused = await fetchInPage(readOnly, method, path, { csrf, body });
    equal(refused.status, 403, `${method} ${path} from the read-only portal`);
    equal(refused.body?.code, 'insufficient_capability', `the code of that refusal (${show(refused.body)})`);
  }
  // Give a wrongly accepted resend time to show.
  await sleep(2000);
  equal(await apiOk('GET', `${endpointPath}/secret`), secret, 'the secret after the refused rotation');
  equal(await apiAttempts(), attemptsBefore, 'the attempts after the refused resend');
  await readOnly.context().close();

  // The tenant signs out: the session is gone.
  step('sign out');
  current = page;
  page.expected.push(
    { method: 'GET', path: /^\/console\/api\/session$/, status: 401 },
    { method: 'GET', path: /^\/api\/v1\/app$/, status: 401 },
  );
  await mainNav(page).getByText('Sign out', { exact: true }).click();
  await page.getByLabel('Tenant API key', { exact: true }).waitFor();
  equal((await fetchInPage(page, 'GET', '/console/api/session')).status, 401, 'the session after signing out');
  equal((await fetchInPage(page, 'GET', '/api/v1/app')).status, 401, 'the API with the cookie after signing out');

  // i, j. Everything the pages logged, and what axe found.
  step('console errors, CSP violations and accessibility');
  await browser.close();
  browser = undefined;
  if (violations.length > 0 || problems.length > 0) {
    for (const v of violations) console.log(`axe: ${v}`);
    for (const p of problems) console.log(`page: ${p}`);
    fail(
      `${violations.length} serious or critical accessibility violation(s) and ` +
        `${problems.length} console error(s), CSP violation(s) or failed request(s) (listed above)`,
    );
  }
  console.log(`deliveries: ${delivered}`);
  console.log(`screenshots: ${ARTIFACTS}`);
  console.log('console: ok');
}

/** Fails unless the endpoint page's summary and charts show `report`. */
async function assertSummary(page, report, window) {
  const expected = {
    attempts: report.attempts,
    successRate: report.successRate,
    p50: report.latencyMs.p50,
    p95: report.latencyMs.p95,
    p99: report.latencyMs.p99,
  };
  for (const [stat, value] of Object.entries(expected)) {
    const element = page.locator(`[data-stat="${stat}"]`);
    const shows = async () => {
      const shown = await element.getAttribute('data-value');
      return value === null ? shown === null || shown === '' : shown !== null && Number(shown) === value;
    };
    await until(`the ${window} summary's ${stat} to be ${value}`, shows, {
      describe: async () => show(await element.getAttribute('data-value')),
    });
  }
  for (const chart of ['latency', 'success']) {
    const figure = page.locator(`figure[data-chart="${chart}"]`);
    await until(
      `the ${window} ${chart} chart with ${report.series.length} point(s)`,
      async () => (await figure.getAttribute('data-points')) === String(report.series.length),
      { describe: async () => show(await figure.getAttribute('data-points')) },
    );
    await figure.locator('canvas').first().waitFor();
  }
}

async function reportFailure(error) {
  console.log(`console: FAILED: ${error instanceof Failure ? error.message : error?.stack || error}`);
  if (current && !current.isClosed()) {
    try {
      console.log(`page: ${current.url()}`);
      const text = (await current.locator('body').innerText({ timeout: 2000 })).slice(0, 3000);
      console.log(`--- the page's text ---\n${text}\n---`);
      console.log(`screenshot: ${await screenshot(current, 'failure.png')}`);
    } catch (e) {
      console.log(`(no failure screenshot: ${e.message})`);
    }
  }
  for (const v of violations) console.log(`axe: ${v}`);
  for (const p of problems) console.log(`page: ${p}`);
}

const watchdog = setTimeout(async () => {
  await reportFailure(new Failure(`the test did not finish within ${SCRIPT_LIMIT_MS / 1000} s`));
  process.exit(1);
}, SCRIPT_LIMIT_MS);

try {
  await main();
  clearTimeout(watchdog);
} catch (error) {
  clearTimeout(watchdog);
  await reportFailure(error);
  await browser?.close().catch(() => {});
  process.exit(1);
}
