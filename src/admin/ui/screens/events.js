// Events: the outbox filtered by status, queue, aggregate, event type, tenant and time, newest first, keyset paged on
// seq (the server's cursor), with a detail panel for one event. The Redis outbox lists by status only: its screen
// offers no other filter. Rows carry a payload preview and size; the detail panel fetches the whole event.
import { api } from '../api.js';
import { badge, clampedText, fields, fmtBytes, fmtTime, h, heading, jsonBlock, table } from '../dom.js';
import { replay } from './replay.js';

const FILTERS = [
  ['queue', 'Queue'],
  ['aggregate_type', 'Aggregate type'],
  ['aggregate_id', 'Aggregate id'],
  ['event_type', 'Event type'],
  ['tenant_id', 'Tenant'],
];
const PAGE_SIZES = ['10', '25', '50', '100', '250'];

/** Filters beyond status the Redis outbox cannot serve (its listing answers 400 naming them). */
const STATUS_ONLY_IGNORES = ['since', 'until', ...FILTERS.map(([k]) => k)];

export async function renderEvents(root, ctx) {
  const statusOnly = ctx.storage === 'redis';
  const filters = Object.fromEntries(
    ['status', 'since', 'until', 'limit', ...FILTERS.map(([k]) => k)].map((k) => [k, ctx.params.get(k) ?? '']),
  );
  filters.limit ||= '50';
  // A bookmarked filter the storage cannot serve is dropped, and the page says so.
  const ignored = statusOnly ? STATUS_ONLY_IGNORES.filter((k) => filters[k]) : [];
  for (const k of ignored) filters[k] = '';
  // Cursors of the pages before this one: "Previous page" goes back through them (keyset paging has no offsets).
  const cursors = [];
  let cursor;

  const results = h('div', { id: 'event-results' });
  const detail = h('aside', { class: 'detail', id: 'event-detail', 'aria-label': 'Event details', hidden: true });
  const form = filterForm(filters, statusOnly, (next) => {
    Object.assign(filters, next);
    ctx.replaceQuery(filters);
    cursors.length = 0;
    cursor = undefined;
    load();
  });
  const note = statusOnly
    ? h(
        'p',
        { class: 'muted small', id: 'filters-note' },
        'The Redis outbox lists events by status only (newest first).',
        ignored.length > 0 ? ` Ignored from the address: ${ignored.join(', ')}.` : '',
      )
    : null;
  if (ignored.length > 0) ctx.replaceQuery(filters);
  root.replaceChildren(heading('Events'), form, note, h('div', { class: 'split' }, results, detail));

  const load = async () => {
    results.setAttribute('aria-busy', 'true');
    try {
      const query = { ...filters, order: 'desc', cursor };
      for (const key of ['since', 'until']) if (filters[key]) query[key] = new Date(filters[key]).toISOString();
      const page = await api('GET', '/outbox', { query });
      if (!ctx.current()) return;
      results.replaceChildren(
        eventsTable(page.events, (event) => openDetail(event.id)),
        pager(page, cursors.length > 0, {
          previous: () => {
            cursor = cursors.pop();
            load();
          },
          next: () => {
            cursors.push(cursor);
            cursor = page.next_cursor;
            load();
          },
        }),
      );
    } catch (err) {
      // Never leave the rows of the previous filter under the new one.
      if (ctx.current()) results.replaceChildren(h('p', { class: 'error-text' }, err.message));
      ctx.fail(err);
    } finally {
      results.removeAttribute('aria-busy');
    }
  };

  const openDetail = async (id) => {
    try {
      const { event } = await api('GET', `/outbox/events/${encodeURIComponent(id)}`);
      if (!ctx.current()) return;
      detail.hidden = false;
      detail.replaceChildren(...eventDetail(event, ctx, () => (detail.hidden = true), load));
      detail.querySelector('h2').focus();
    } catch (err) {
      ctx.fail(err);
    }
  };

  await load();
  if (ctx.params.get('open')) await openDetail(ctx.params.get('open'));
}

function filterForm(values, statusOnly, apply) {
  const input = (name, label, attrs = {}) =>
    h(
      'div',
      { class: 'field' },
      h('label', { for: `f-${name}` }, label),
      h('input', { id: `f-${name}`, name, value: values[name], autocomplete: 'off', ...attrs }),
    );
  const select = (name, label, options) =>
    h(
      'div',
      { class: 'field' },
      h('label', { for: `f-${name}` }, label),
      h(
        'select',
        { id: `f-${name}`, name },
        options.map(([value, text]) => h('option', { value, selected: values[name] === value }, text)),
      ),
    );
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter events' },
    select('status', 'Status', [
      ['', 'any'],
      ['pending', 'pending'],
      ['published', 'published'],
      ['failed', 'failed'],
    ]),
    ...(statusOnly
      ? []
      : [
          ...FILTERS.map(([name, label]) => input(name, label)),
          input('since', 'Created from', { type: 'datetime-local', step: 1 }),
          input('until', 'Created until', { type: 'datetime-local', step: 1 }),
        ]),
    select(
      'limit',
      'Per page',
      PAGE_SIZES.map((n) => [n, n]),
    ),
    h(
      'div',
      { class: 'field buttons' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply filters'),
      h('button', { type: 'reset' }, 'Clear'),
    ),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    apply(Object.fromEntries(new FormData(form)));
  });
  form.addEventListener('reset', (event) => {
    event.preventDefault();
    for (const el of form.elements) if (el.name) el.value = el.name === 'limit' ? '50' : '';
    apply(Object.fromEntries(new FormData(form)));
  });
  return form;
}

function eventsTable(events, open) {
  return table(
    'Outbox events, newest first',
    [
      {
        label: 'Seq',
        class: 'num',
        cell: (e) =>
          h(
            'button',
            { type: 'button', class: 'link', 'aria-label': `Open event ${e.seq}`, onclick: () => open(e) },
            e.seq,
          ),
      },
      { label: 'Created', cell: (e) => fmtTime(e.created_at) },
      { label: 'Status', cell: (e) => badge(e.status) },
      { label: 'Event type', cell: (e) => e.event_type },
      { label: 'Aggregate', cell: (e) => `${e.aggregate_type ? `${e.aggregate_type} / ` : ''}${e.aggregate_id}` },
      { label: 'Queue', cell: (e) => e.queue ?? '(default)' },
      { label: 'Tenant', cell: (e) => e.tenant_id || '—' },
      { label: 'Retries', class: 'num', cell: (e) => e.retry_count },
      { label: 'Payload', class: 'num', cell: (e) => fmtBytes(e.payload_bytes) },
    ],
    events,
    { onRowClick: open, empty: 'No events match these filters.' },
  );
}

function pager(page, hasPrevious, go) {
  return h(
    'nav',
    { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', disabled: !hasPrevious, onclick: go.previous }, '← Previous page'),
    h('span', { class: 'muted small' }, `${page.events.length} shown`),
    h('button', { type: 'button', disabled: !page.next_cursor, onclick: go.next }, 'Next page →'),
  );
}

function eventDetail(e, ctx, close, reload) {
  const actions = h('div', { class: 'actions' });
  if (e.status === 'failed' && !ctx.readOnly) {
    actions.append(
      h(
        'button',
        {
          type: 'button',
          class: 'primary',
          onclick: async () => {
            if (await replay({ ids: [e.id] }, `Event #${e.seq}`, ctx)) reload();
          },
        },
        'Replay this event',
      ),
    );
  }
  actions.append(h('button', { type: 'button', onclick: close }, 'Close'));
  return [
    h('h2', { tabindex: -1 }, `Event #${e.seq}`),
    fields([
      ['Id', h('code', {}, e.id)],
      ['Status', badge(e.status)],
      ['Event type', e.event_type],
      ['Aggregate', `${e.aggregate_type || '—'} / ${e.aggregate_id}`],
      ['Queue', e.queue ?? '(default pattern)'],
      ['Tenant', e.tenant_id || '—'],
      ['Attempts', `${e.retry_count} retries of ${e.max_retries ?? 'outbox.max_retries (the default)'}`],
      ['Created', fmtTime(e.created_at)],
      ['Next attempt', e.status === 'pending' ? fmtTime(e.next_attempt_at) : '—'],
      ['Published', fmtTime(e.published_at)],
    ]),
    h('h3', {}, 'Last error'),
    e.last_error ? clampedText(e.last_error) : h('p', { class: 'muted' }, 'none'),
    h('h3', {}, 'Payload'),
    jsonBlock(e.payload, 'Payload'),
    h('h3', {}, 'Headers'),
    jsonBlock(e.headers, 'Headers'),
    h('h3', {}, 'Metadata'),
    jsonBlock(e.metadata, 'Metadata'),
    actions,
  ];
}
