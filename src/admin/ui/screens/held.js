// Held aggregates: aggregates whose later events wait behind a retrying or failed event, with that blocking event.
import { api } from '../api.js';
import { badge, clampedText, fmtNum, fmtTime, h, heading, table } from '../dom.js';
import { replay } from './replay.js';

export async function renderHeld(root, ctx) {
  const body = h('div');
  root.replaceChildren(
    heading('Held aggregates'),
    h(
      'p',
      { class: 'muted' },
      'Events of one aggregate are published in order, so an event waiting to be retried holds back the events written after it. A dead (failed) event does not: its aggregate flows on, and the event waits under Dead.',
    ),
    body,
  );
  const load = async () => {
    const { aggregates } = await api('GET', '/outbox/held', { query: { limit: 200 } });
    if (!ctx.current()) return;
    body.replaceChildren(
      table(
        'Aggregates waiting behind an event',
        [
          {
            label: 'Aggregate',
            // The Redis outbox lists by status only: no aggregate view to link to.
            cell: (a) => {
              const name = `${a.aggregate_type ? `${a.aggregate_type} / ` : ''}${a.aggregate_id}`;
              if (ctx.storage === 'redis') return name;
              const query = `aggregate_type=${encodeURIComponent(a.aggregate_type ?? '')}&aggregate_id=${encodeURIComponent(a.aggregate_id)}`;
              return h('a', { href: `#/events?${query}` }, name);
            },
          },
          { label: 'Waiting', class: 'num', cell: (a) => fmtNum(a.waiting) },
          {
            label: 'Blocking event',
            cell: (a) =>
              h(
                'a',
                { href: `#/events?open=${encodeURIComponent(a.blocking.id)}` },
                `#${a.blocking.seq} ${a.blocking.event_type}`,
              ),
          },
          {
            label: 'Status',
            cell: (a) =>
              badge(a.blocking.retry_count > 0 && a.blocking.status === 'pending' ? 'retrying' : a.blocking.status),
          },
          { label: 'Retries', class: 'num', cell: (a) => a.blocking.retry_count },
          {
            label: 'Next attempt',
            cell: (a) => (a.blocking.status === 'pending' ? fmtTime(a.blocking.next_attempt_at) : '—'),
          },
          {
            label: 'Last error',
            class: 'wrap',
            cell: (a) => (a.blocking.last_error ? clampedText(a.blocking.last_error) : '—'),
          },
          // Only a dead blocking event can be replayed; the relay retries the others by itself.
          ...(ctx.readOnly || !aggregates.some((a) => a.blocking.status === 'failed')
            ? []
            : [
                {
                  label: 'Action',
                  cell: (a) =>
                    a.blocking.status === 'failed'
                      ? h(
                          'button',
                          {
                            type: 'button',
                            onclick: async () => {
                              if (await replay({ ids: [a.blocking.id] }, `Event #${a.blocking.seq}`, ctx)) load();
                            },
                          },
                          'Replay',
                        )
                      : '',
                },
              ]),
        ],
        aggregates,
        { empty: 'No aggregate is held: every aggregate is flowing.' },
      ),
    );
  };
  await load();
}
