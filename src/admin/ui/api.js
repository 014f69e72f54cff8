// The admin API client. The token lives in sessionStorage (this tab only) and travels as an Authorization header
// set by this script, never as a cookie: a request another site makes to this server cannot carry it (CSRF).

import { visible } from './dom.js';

// Where the admin API is: the page's <meta name="exactly-once-api">, relative to the page (the server fills it in).
const API_PATH =
  document.querySelector('meta[name="exactly-once-api"]')?.getAttribute('content') || 'api/v1/exactly-once';
const API_BASE = new URL(`${API_PATH.replace(/\/+$/, '')}/`, document.baseURI);
const TOKEN_KEY = 'exactly-once.admin-token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function hasToken() {
  return Boolean(sessionStorage.getItem(TOKEN_KEY));
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  tokenChanged();
}

function tokenChanged() {
  document.getElementById('forget-token').hidden = !hasToken();
}

/**
 * `api('GET', '/outbox', { query: { status: 'failed' } })` → parsed JSON (null for 204). A 401 asks for the token
 * and tries again; any other error throws an `ApiError` carrying the server's code and message.
 */
export async function api(method, path, options = {}) {
  const url = new URL(path.replace(/^\//, ''), API_BASE);
  for (const [name, value] of Object.entries(options.query ?? {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, String(value));
  }
  for (let attempt = 0; ; attempt++) {
    const headers = { accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.authorization = `Bearer ${token}`;
    const init = { method, headers, credentials: 'omit', cache: 'no-store' };
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(options.body);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (err) {
      throw new ApiError(0, 'EO_UNREACHABLE', `cannot reach the admin server (${err.message})`);
    }
    if (res.status === 204) return null;
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (res.ok) return json;
    const error = new ApiError(
      res.status,
      json?.error?.code ?? `HTTP_${res.status}`,
      json?.error?.message ?? `${res.status} ${res.statusText}`,
    );
    if (res.status === 401 && attempt < 3 && (await askForToken(error.message, Boolean(token)))) continue;
    throw error;
  }
}

let asking;
/** One dialog for every request that got a 401 at the same moment; resolves true when a token was entered. */
function askForToken(serverMessage, hadToken) {
  asking ??= new Promise((resolve) => {
    const dialog = document.getElementById('token-dialog');
    const form = document.getElementById('token-form');
    const input = document.getElementById('token-input');
    document.getElementById('token-reason').textContent = visible(
      hadToken
        ? `The server refused the token: ${serverMessage}`
        : `This admin server needs a token for this: ${serverMessage}`,
    );
    input.value = '';
    const done = (given) => {
      form.removeEventListener('submit', onSubmit);
      cancel.removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onEscape);
      if (dialog.open) dialog.close();
      asking = undefined;
      resolve(given);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      tokenChanged();
      done(true);
    };
    const onCancel = () => done(false);
    const onEscape = (event) => {
      event.preventDefault();
      done(false);
    };
    const cancel = document.getElementById('token-cancel');
    form.addEventListener('submit', onSubmit);
    cancel.addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onEscape);
    dialog.showModal();
    input.focus();
  });
  return asking;
}

export function initAuthControls() {
  tokenChanged();
  document.getElementById('forget-token').addEventListener('click', () => {
    forgetToken();
    document.dispatchEvent(new CustomEvent('eo:token-forgotten'));
  });
}
