// The console's entry point: signs in (portal token, existing cookie or the
// sign-in form), keeps the header in step with the session, and renders the
// page the URL's fragment names.

import * as api from './api.js';
import * as router from './router.js';
import { clearNotices, confirmDialog, errorState, h, showError } from './ui.js';
import * as appsPage from './pages/apps.js';
import * as endpointsPage from './pages/endpoints.js';
import * as endpointPage from './pages/endpoint.js';
import * as messagesPage from './pages/messages.js';
import * as messagePage from './pages/message.js';
import * as eventTypesPage from './pages/event-types.js';
import * as signInPage from './pages/sign-in.js';
import * as notFoundPage from './pages/not-found.js';

const PAGES = {
  apps: appsPage,
  'event-types': eventTypesPage,
  'app-event-types': eventTypesPage,
  endpoints: endpointsPage,
  endpoint: endpointPage,
  messages: messagesPage,
  message: messagePage,
  'not-found': notFoundPage,
};

// boot-check.js tells the viewer when this module never ran.
document.documentElement.dataset.console = 'started';

const DEFAULT_ACCENT = '#4f46e5';
const main = document.getElementById('main');
let pageController = null;
/** Whether a page was shown before: the first one leaves the focus where the browser put it. */
let rendered = false;

api.whenSignedOut((ended) => showSignIn(ended.scope === 'app'
  ? 'Your session has ended. Open your portal link again.'
  : 'Your session has ended. Sign in again.'));

document.getElementById('skip-link').addEventListener('click', (event) => {
  // The fragment is the router's: move focus without touching it.
  event.preventDefault();
  main.focus();
});

document.getElementById('sign-out').addEventListener('click', async () => {
  try {
    await api.signOut();
  } catch (error) {
    if (!api.isQuiet(error)) showError(error);
  }
  router.replace('#/');
  showSignIn();
});

router.onChange(() => {
  if (api.currentSession()) renderRoute();
});

// A portal link opened in a tab that already shows the console.
window.addEventListener('hashchange', () => {
  if (location.hash.startsWith('#token=')) signInWithToken(location.hash).catch(showBootError);
});

boot();

async function boot() {
  try {
    const hash = location.hash;
    if (hash.startsWith('#token=')) {
      await signInWithToken(hash);
      return;
    }
    const session = await api.loadSession();
    if (session) startSession(session);
    else showSignIn();
  } catch (error) {
    showBootError(error);
  }
}

function showBootError(error) {
  main.replaceChildren(h('h1', {}, 'Herald console'), errorState(error, () => location.reload(), 'the console'));
}

async function signInWithToken(hash) {
  const raw = hash.slice('#token='.length).split('&')[0];
  let token = raw;
  try {
    token = decodeURIComponent(raw);
  } catch {
    // Not percent-encoded after all: the server judges it as it is.
  }
  // A link opened over a tenant's own session would silently replace it with
  // a portal one (anyone can send a portal link): ask first.
  const open = api.currentSession() ?? await api.loadSession().catch(() => null);
  if (open?.scope === 'tenant') {
    const proceed = await confirmDialog({
      title: 'Open the app portal?',
      message: `This link opens one application's portal and signs you out of the console of ${open.tenantName} in this browser.`,
      confirmLabel: 'Open the portal',
    });
    if (!proceed) {
      router.replace('#/');
      startSession(open);
      return;
    }
  }
  // The token leaves the address bar once exchanged (so that whoever watches
  // the address knows the session is open), and also when it is refused.
  try {
    const session = await api.signIn({ token });
    router.replace(session.appId ? router.href('app', session.appId) : '#/');
    startSession(session);
  } catch (error) {
    router.replace('#/');
    if (!(error instanceof api.ApiError) || error.status === 0 || error.status >= 500) throw error;
    if (api.currentSession()) {
      // A bad link opened over a working session: keep the session.
      renderRoute().then(() => showError(`This link could not be used: ${error.message}`));
    } else {
      showSignIn(`This link could not be used: ${error.message}`);
    }
  }
}

/** Called with a fresh session: after the form, a token, or the cookie. */
function startSession(session) {
  applyAccent(session.accentColor);
  updateHeader(session);
  if (!router.isRouteHash(location.hash) || location.hash === '' || location.hash === '#') router.replace('#/');
  renderRoute();
}

function showSignIn(notice) {
  pageController?.abort();
  pageController = null;
  clearNotices();
  updateHeader(null);
  applyAccent(null);
  document.title = 'Sign in · Herald console';
  // The page after signing in takes the focus to its heading.
  rendered = true;
  signInPage.render({
    main,
    notice,
    onSignedIn: startSession,
  });
}

/** Redirects that depend on the session's scope; returns true when it redirected. */
function redirectForScope(route, session) {
  if (session.scope !== 'app' || !session.appId) return false;
  if (route.name === 'apps') {
    router.replace(router.href('app', session.appId));
    return true;
  }
  if (route.name === 'event-types') {
    router.replace(router.href('app', session.appId, 'event-types'));
    return true;
  }
  return false;
}

async function renderRoute() {
  const session = api.currentSession();
  let route = router.parse();
  if (redirectForScope(route, session)) route = router.parse();
  pageController?.abort();
  const controller = new AbortController();
  pageController = controller;
  clearNotices();
  updateHeader(session, route);
  const page = PAGES[route.name] ?? notFoundPage;
  const focusAfter = rendered;
  rendered = true;
  try {
    await page.render({ main, route, session, signal: controller.signal });
  } catch (error) {
    if (api.isQuiet(error) || controller.signal.aborted) return;
    main.replaceChildren(h('h1', {}, 'Something went wrong'), errorState(error, () => renderRoute()));
  }
  if (controller.signal.aborted) return;
  const heading = main.querySelector('h1');
  if (heading) {
    document.title = `${heading.textContent} · Herald console`;
    if (focusAfter) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: false });
    }
  }
}

function updateHeader(session, route) {
  const nav = document.getElementById('main-nav');
  nav.hidden = !session;
  document.getElementById('tenant-name').textContent = session?.tenantName ?? '';
  document.getElementById('read-only').hidden = !session?.readOnly;
  if (!session) return;
  const tenantScope = session.scope !== 'app';
  document.getElementById('nav-apps').hidden = !tenantScope;
  const eventTypes = document.getElementById('nav-event-types');
  eventTypes.href = tenantScope || !session.appId ? '#/event-types' : router.href('app', session.appId, 'event-types');
  const current = route?.name;
  markCurrent(nav.querySelector('#nav-apps a'), current === 'apps');
  markCurrent(eventTypes, current === 'event-types' || current === 'app-event-types');
}

function markCurrent(link, isCurrent) {
  if (isCurrent) link.setAttribute('aria-current', 'page');
  else link.removeAttribute('aria-current');
}

/** The session's accent colour for the header and buttons, text in black or white to keep contrast. */
function applyAccent(color) {
  const accent = /^#[0-9a-fA-F]{6}$/.test(color ?? '') ? color : DEFAULT_ACCENT;
  const root = document.documentElement.style;
  root.setProperty('--accent', accent);
  const onAccent = contrast(accent, '#ffffff') >= 4.5 ? '#ffffff' : '#111827';
  root.setProperty('--on-accent', onAccent);
  // Links on white use the accent only where it reads well enough.
  root.setProperty('--link', contrast(accent, '#ffffff') >= 4.5 ? accent : '#3730a3');
}

function contrast(a, b) {
  const [la, lb] = [luminance(a), luminance(b)];
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

function luminance(hex) {
  const channel = (i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5);
}
