// Idempotency keys: look one up by queue, tenant and key; see its state, stored result, expiry and whether the Redis
// hot cache holds it; delete it.
import { api } from '../api.js';
import { badge, confirmAction, fields, fmtTime, h, heading, jsonBlock, notice } from '../dom.js';

export async function renderKeys(root, ctx) {
  const values = {
    queue: ctx.params.get('queue') ?? '',
    tenant: ctx.params.get('tenant') ?? '',
    key: ctx.params.get('key') ?? '',
  };
  const result = h('div', { id: 'key-result', 'aria-live': 'polite' });
  const field = (name, label, required) =>
    h(
      'div',
      { class: 'field' },
      h('label', { for: `k-${name}` }, label),
      h('input', { id: `k-${name}`, name, value: values[name], required, autocomplete: 'off', spellcheck: 'false' }),
    );
  const form = h(
    'form',
    { class: 'filters', 'aria-label': 'Look up an idempotency key' },
    field('queue', 'Queue', true),
    field('tenant', 'Tenant (empty for none)', false),
    field('key', 'Key', true),
    h('div', { class: 'field buttons' }, h('button', { type: 'submit', class: 'primary' }, 'Look up')),
  );
  root.replaceChildren(heading('Idempotency keys'), form, result);

  const lookup = async () => {
    ctx.replaceQuery(values);
    try {
      const record = await api('GET', '/idempotency', { query: values });
      if (!ctx.current()) return;
      result.replaceChildren(recordView(record, values, ctx, result));
    } catch (err) {
      if (err.code === 'EO_IDEMPOTENCY_KEY_NOT_FOUND') {
        result.replaceChildren(h('p', { class: 'empty' }, `No live key "${values.key}" in queue "${values.queue}".`));
      } else ctx.fail(err);
    }
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    Object.assign(values, Object.fromEntries(new FormData(form)));
    lookup();
  });
  if (values.queue && values.key) await lookup();
}

function cachedText(cached) {
  if (cached === true) return 'yes: the Redis hot cache holds it';
  if (cached === false) return 'no';
  if (cached === null) return 'no hot cache configured';
  return '—';
}

function recordView(r, values, ctx, container) {
  const del = ctx.readOnly
    ? null
    : h(
        'button',
        {
          type: 'button',
          class: 'danger',
          onclick: async () => {
            const ok = await confirmAction(
              'Delete this key?',
              `Key "${r.key_id}" (queue "${r.queue_name}") will be forgotten: the next job with this key runs again.`,
              'Delete key',
            );
            if (!ok) return;
            try {
              await api('DELETE', '/idempotency', { query: values });
              notice('ok', `Deleted key "${r.key_id}".`);
              container.replaceChildren(h('p', { class: 'empty' }, `Key "${r.key_id}" was deleted.`));
            } catch (err) {
              ctx.fail(err);
            }
          },
        },
        'Delete key',
      );
  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'key-title' },
    h('h2', { id: 'key-title' }, 'Key'),
    fields([
      ['Queue', r.queue_name],
      ['Tenant', r.tenant_id || '—'],
      ['Key', h('code', {}, r.key_id)],
      ['State', badge(r.status)],
      ['Cached in Redis', cachedText(r.cached)],
      ['Created', fmtTime(r.created_at)],
      ['Expires', fmtTime(r.expires_at)],
      ['Lease expires', fmtTime(r.lease_expires_at)],
    ]),
    h('h3', {}, 'Stored result'),
    jsonBlock(r.value, 'Stored result'),
    del ? h('div', { class: 'actions' }, del) : null,
  );
}
