// Dead events: failed events grouped by their last error; replay one, a selection, or a whole group.
import { api } from '../api.js';
import { clampedText, fill, fmtNum, fmtTime, h, heading, table } from '../dom.js';
import { replay } from './replay.js';

/** Failed events listed under their groups; a group with more shows its count and can still be replayed whole. */
const LISTED = 500;

export async function renderDead(root, ctx) {
  const body = h('div');
  const selected = new Set();
  const selectedButton = h('button', { type: 'button', class: 'primary', disabled: true }, 'Replay selected (0)');
  const toolbar = h('div', { class: 'toolbar' }, selectedButton);
  fill(root, heading('Dead events'), ctx.readOnly ? null : toolbar, body);

  const updateSelection = () => {
    selectedButton.textContent = `Replay selected (${selected.size})`;
    selectedButton.disabled = selected.size === 0;
  };
  selectedButton.addEventListener('click', async () => {
    if (await replay({ ids: [...selected] }, `${selected.size} selected event(s)`, ctx)) load();
  });

  const load = async () => {
    const [{ groups }, list] = await Promise.all([
      api('GET', '/outbox/failed/groups', { query: { limit: 100 } }),
      api('GET', '/outbox', { query: { status: 'failed', order: 'desc', limit: LISTED } }),
    ]);
    if (!ctx.current()) return;
    selected.clear();
    updateSelection();
    const byError = new Map();
    for (const e of list.events) {
      const key = e.last_error ?? '';
      if (!byError.has(key)) byError.set(key, []);
      byError.get(key).push(e);
    }
    if (groups.length === 0) {
      body.replaceChildren(h('p', { class: 'muted empty' }, 'No dead events. Nothing to replay.'));
      return;
    }
    body.replaceChildren(
      ...groups.map((g, i) =>
        groupSection(g, i, byError.get(g.error ?? '') ?? [], { ctx, selected, updateSelection, load }),
      ),
    );
  };
  await load();
}

function groupSection(group, index, events, { ctx, selected, updateSelection, load }) {
  const titleId = `group-${index}`;
  const replayGroup = ctx.readOnly
    ? null
    : h(
        'button',
        {
          type: 'button',
          onclick: async () => {
            if (await replay({ error: group.error }, `All ${group.count} event(s) failing with this error`, ctx))
              load();
          },
        },
        `Replay all ${fmtNum(group.count)}`,
      );
  const columns = [
    ...(ctx.readOnly
      ? []
      : [
          {
            label: 'Select',
            cell: (e) =>
              h('input', {
                type: 'checkbox',
                'aria-label': `Select event ${e.seq}`,
                onchange: (event) => {
                  if (event.target.checked) selected.add(e.id);
                  else selected.delete(e.id);
                  updateSelection();
                },
              }),
          },
        ]),
    { label: 'Seq', class: 'num', cell: (e) => h('a', { href: `#/events?open=${encodeURIComponent(e.id)}` }, e.seq) },
    { label: 'Event type', cell: (e) => e.event_type },
    { label: 'Aggregate', cell: (e) => `${e.aggregate_type ? `${e.aggregate_type} / ` : ''}${e.aggregate_id}` },
    { label: 'Queue', cell: (e) => e.queue ?? '(default)' },
    { label: 'Created', cell: (e) => fmtTime(e.created_at) },
    { label: 'Retries', class: 'num', cell: (e) => e.retry_count },
    ...(ctx.readOnly
      ? []
      : [
          {
            label: 'Action',
            cell: (e) =>
              h(
                'button',
                {
                  type: 'button',
                  onclick: async () => {
                    if (await replay({ ids: [e.id] }, `Event #${e.seq}`, ctx)) load();
                  },
                },
                'Replay',
              ),
          },
        ]),
  ];
  return h(
    'section',
    { class: 'group', 'aria-labelledby': titleId },
    h(
      'div',
      { class: 'group-head' },
      h('h2', { id: titleId }, `${fmtNum(group.count)} event(s)`),
      h('span', { class: 'muted small' }, `first ${fmtTime(group.first_at)} · last ${fmtTime(group.last_at)}`),
      replayGroup,
    ),
    // Clamped: an error of thousands of characters must not push its events out of view.
    clampedText(group.error ?? '(no error text)'),
    table(`Dead events failing with this error`, columns, events, {
      empty: 'None of these are among the newest failed events listed here.',
    }),
    events.length < group.count
      ? h('p', { class: 'muted small' }, `Showing ${events.length} of ${fmtNum(group.count)}.`)
      : null,
  );
}
