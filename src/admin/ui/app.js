// The dashboard's shell: hash routing (#/overview, #/events?status=failed, ...), the read-only flag, and errors.
import { api, initAuthControls } from './api.js';
import { clearNotice, h, notice } from './dom.js';
import { renderDead } from './screens/dead.js';
import { renderEvents } from './screens/events.js';
import { renderHeld } from './screens/held.js';
import { renderKeys } from './screens/keys.js';
import { renderOverview } from './screens/overview.js';
import { renderTables } from './screens/tables.js';
import { renderWorkers } from './screens/workers.js';

const SCREENS = {
  overview: { title: 'Overview', render: renderOverview },
  events: { title: 'Events', render: renderEvents },
  held: { title: 'Held aggregates', render: renderHeld },
  dead: { title: 'Dead events', render: renderDead },
  keys: { title: 'Idempotency keys', render: renderKeys },
  tables: { title: 'Table health', render: renderTables },
  workers: { title: 'Workers', render: renderWorkers },
};

const state = { readOnly: false, booted: false, storage: 'database' };
let stopCurrent;
let generation = 0;

/** What screens get: the route's query, the read-only flag, a way to navigate and to report errors. */
function context(params, mine) {
  return {
    params,
    get readOnly() {
      return state.readOnly;
    },
    /** `database` or `redis` (`outbox.storage_type`): the Redis outbox lists by status only. */
    get storage() {
      return state.storage;
    },
    setReadOnly,
    /** True while this screen is still the one shown (a late answer must not paint over the next screen). */
    current: () => mine === generation,
    go(screen, query) {
      const qs = new URLSearchParams(Object.entries(query ?? {}).filter(([, v]) => v !== undefined && v !== ''));
      const hash = `#/${screen}${qs.size ? `?${qs}` : ''}`;
      if (location.hash === hash) route();
      else location.hash = hash;
    },
    /** Keep the screen's state in the address (so reload and back work) without re-rendering it. */
    replaceQuery(query) {
      const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== ''));
      const name = parseHash().name;
      history.replaceState(null, '', `#/${name}${qs.size ? `?${qs}` : ''}`);
    },
    fail: showError,
  };
}

function setReadOnly(value) {
  if (state.readOnly === Boolean(value)) return;
  state.readOnly = Boolean(value);
  document.body.classList.toggle('read-only', state.readOnly);
  document.getElementById('mode').hidden = !state.readOnly;
  // Screens draw their buttons once; draw again so none is left behind.
  if (state.readOnly && state.booted) route();
}

function showError(err) {
  notice('error', err?.message ? String(err.message) : String(err));
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  const name = path in SCREENS ? path : 'overview';
  return { name, params: new URLSearchParams(query) };
}

async function route() {
  const { name, params } = parseHash();
  const screen = SCREENS[name];
  const mine = ++generation;
  if (typeof stopCurrent === 'function') stopCurrent();
  stopCurrent = undefined;
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.screen === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${screen.title} · exactly-once`;
  const main = document.getElementById('main');
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    stopCurrent = await screen.render(main, context(params, mine));
  } catch (err) {
    if (mine !== generation) return;
    main.replaceChildren(h('h1', { tabindex: -1 }, screen.title), h('p', { class: 'error-text' }, err.message));
    showError(err);
  }
}

async function boot() {
  initAuthControls();
  document.addEventListener('eo:token-forgotten', () => route());
  window.addEventListener('hashchange', () => {
    clearNotice();
    route().then(() => document.querySelector('main h1')?.focus({ preventScroll: true }));
  });
  try {
    // Read-only mode decides which buttons exist, so learn it before the first screen draws any.
    const overview = await api('GET', '/overview');
    setReadOnly(overview?.read_only === true);
    if (overview?.storage) state.storage = overview.storage;
  } catch {
    // The screen shows the error when it asks again.
  }
  state.booted = true;
  await route();
}

boot();
