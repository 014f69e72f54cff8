// DOM helpers. Every piece of data reaches the page as a text node or an attribute value set through the DOM, never
// as markup: payloads, errors and keys are attacker-controlled text. Text nodes go through `visible`, so characters
// that would make that text lie about itself are shown as escapes.

/**
 * Bidirectional controls (U+202A-202E, U+2066-2069, U+200E/200F, U+061C) reorder the text around them: an error
 * reading `"rtl": "` + U+202E + `gnp.exe"` shows as `exe.png`. They, and the invisible zero-width space and BOM,
 * are shown as their JSON escape (`\u202e`), as JSON.stringify would have written them if it escaped them.
 */
const DECEPTIVE = /[\u061c\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

export function visible(text) {
  return String(text).replace(DECEPTIVE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * `h('td', { class: 'num' }, 'text', node)`: an element with attributes, listeners (`onclick`) and children.
 * Strings become text nodes.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

/** `el.replaceChildren`, minus the `null`s it would print as text. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(visible(child)));
  }
  return el;
}

/** A table in a horizontally scrolling wrapper (narrow screens), with a caption for screen readers. */
export function table(caption, columns, rows, options = {}) {
  const head = h('tr', {}, ...columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)));
  const body = rows.map((row) => {
    const tr = h('tr', {}, ...columns.map((c) => h('td', { class: c.class }, c.cell(row))));
    if (options.rowClass) tr.className = options.rowClass(row) ?? '';
    if (options.onRowClick) {
      tr.classList.add('clickable');
      tr.addEventListener('click', (event) => {
        // Buttons, links and checkboxes inside the row do their own thing.
        if (event.target.closest('button, a, input, label')) return;
        options.onRowClick(row, tr);
      });
    }
    return tr;
  });
  const empty = rows.length === 0 ? h('p', { class: 'muted empty' }, options.empty ?? 'Nothing here.') : null;
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', {}, h('caption', { class: 'sr-only' }, caption), h('thead', {}, head), h('tbody', {}, body)),
    empty,
  );
}

/** A labelled value tile for the overview. */
export function stat(label, value, options = {}) {
  return h(
    'div',
    { class: `stat ${options.tone ?? ''}`, dataset: { stat: options.id ?? label } },
    h('div', { class: 'stat-label' }, label),
    h('div', { class: 'stat-value' }, value),
    options.hint ? h('div', { class: 'stat-hint' }, options.hint) : null,
  );
}

/** `<dl>` of [term, value] pairs; a value may be a node. */
export function fields(pairs) {
  return h('dl', { class: 'fields' }, ...pairs.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}

/** Pretty JSON in a `<pre>`: `textContent`, so `<script>` in a payload is shown, not run (and `visible`, see above). */
export function jsonBlock(value, label) {
  return h('pre', { class: 'json', tabindex: 0, 'aria-label': label }, JSON.stringify(value ?? null, null, 2));
}

export function badge(status) {
  return h('span', { class: `badge status-${status}` }, status);
}

/** What `clampedText` shows of a long text until asked for all of it. */
const CLAMP_CHARS = 300;
const CLAMP_LINES = 4;

/**
 * A long text (an error of thousands of characters) clamped to its first lines, with a control to show it all, so it
 * never pushes the screen's table out of view. Short texts are a plain `<pre>`.
 */
export function clampedText(text, className = 'error-text') {
  const full = String(text);
  const lines = full.split('\n');
  if (full.length <= CLAMP_CHARS && lines.length <= CLAMP_LINES) return h('pre', { class: className }, full);
  const head = lines.slice(0, CLAMP_LINES).join('\n').slice(0, CLAMP_CHARS);
  const pre = h('pre', { class: `${className} clamped` }, `${head}…`);
  const toggle = h(
    'button',
    { type: 'button', class: 'link small' },
    `Show all ${full.length.toLocaleString('en-US')} characters`,
  );
  let open = false;
  toggle.addEventListener('click', () => {
    open = !open;
    fill(pre, open ? full : `${head}…`);
    pre.classList.toggle('clamped', !open);
    toggle.textContent = open ? 'Show less' : `Show all ${full.length.toLocaleString('en-US')} characters`;
  });
  return h('div', { class: 'clamp' }, pre, toggle);
}

/** A modal confirmation (the page's `<dialog>`): resolves true only when the user confirms. */
export function confirmAction(title, message, confirmLabel) {
  const dialog = document.getElementById('confirm-dialog');
  document.getElementById('confirm-title').textContent = visible(title);
  document.getElementById('confirm-message').textContent = visible(message);
  document.getElementById('confirm-ok').textContent = confirmLabel;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
  });
}

let noticeTimer;
/** One line at the top of the page: `ok` fades after a while, `error` stays (role=alert) until the next one. */
export function notice(kind, text) {
  const el = document.getElementById('notice');
  clearTimeout(noticeTimer);
  el.hidden = false;
  el.className = `notice ${kind}`;
  el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  el.replaceChildren(
    h('span', {}, text),
    h('button', { type: 'button', class: 'link', onclick: clearNotice }, 'Dismiss'),
  );
  if (kind !== 'error') noticeTimer = setTimeout(clearNotice, 8000);
}

export function clearNotice() {
  const el = document.getElementById('notice');
  el.hidden = true;
  el.replaceChildren();
}

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtAge(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.round(Number(seconds)));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let n = Number(bytes);
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

export function fmtNum(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US');
}

/** A screen's heading, focused on navigation so keyboard and screen-reader users land on the new content. */
export function heading(text, ...extra) {
  return h('div', { class: 'screen-head' }, h('h1', { tabindex: -1 }, text), ...extra);
}
