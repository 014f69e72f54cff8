// Workers: the heartbeats of the workers consuming the relay's lists (Node's and go-redis-work-queue's), processing
// lists a dead worker left for the reaper, and the dead-letter list, with replay of one job, a selection, or all.
import { api } from '../api.js';
import { confirmAction, fill, fmtAge, fmtNum, fmtTime, h, heading, notice, table } from '../dom.js';

const REFRESH_MS = 5000;
const LISTED = 200;

export async function renderWorkers(root, ctx) {
  const updated = h('span', { class: 'muted small' });
  const live = h('section', { 'aria-labelledby': 'workers-live' });
  const dead = h('section', { 'aria-labelledby': 'workers-dead' });
  fill(root, heading('Workers', updated), live, dead);
  const selected = new Set();
  let stopped = false;
  let timer;

  const replay = async (body, description) => {
    const ok = await confirmAction(
      'Replay dead jobs?',
      `${description} will go back to the list (or stream) they died in, with retries 0.`,
      'Replay',
    );
    if (!ok) return;
    try {
      const result = await api('POST', '/workers/dead/replay', { body });
      const missing = result?.missing?.length ?? 0;
      notice('ok', `Replayed ${result?.replayed ?? 0} job(s)${missing ? `; ${missing} were no longer dead` : ''}.`);
      selected.clear();
      await refresh();
    } catch (err) {
      ctx.fail(err);
    }
  };

  const refresh = async () => {
    if (stopped) return;
    clearTimeout(timer);
    try {
      const [overview, letters] = await Promise.all([
        api('GET', '/workers'),
        api('GET', '/workers/dead', { query: { limit: LISTED } }),
      ]);
      if (stopped || !ctx.current()) return;
      fill(live, ...workersSection(overview));
      fill(dead, ...deadSection(letters, { ctx, selected, replay }));
      updated.textContent = `Updated ${fmtTime(new Date().toISOString()).slice(11)} · refreshes every 5 s`;
    } catch (err) {
      if (!stopped) ctx.fail(err);
    } finally {
      if (!stopped) timer = setTimeout(tick, REFRESH_MS);
    }
  };
  const tick = () => {
    if (document.hidden) timer = setTimeout(tick, REFRESH_MS);
    else refresh();
  };
  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function consumes(w) {
  if (w.runtime !== 'node') {
    // A go-redis-work-queue worker's heartbeat holds the job it runs.
    let id;
    try {
      id = JSON.parse(w.job).id;
    } catch {
      id = undefined;
    }
    return id ? `go-redis-work-queue, running job ${id}` : 'go-redis-work-queue';
  }
  if (w.stream) return `stream ${w.stream} (group ${w.group})`;
  return (w.queues ?? []).join(', ');
}

function workersSection(o) {
  const columns = [
    { label: 'Worker', cell: (w) => w.id },
    { label: 'Runtime', cell: (w) => w.runtime },
    { label: 'Host / pid', cell: (w) => (w.host ? `${w.host} / ${w.pid}` : '—') },
    { label: 'Consumes', cell: consumes },
    { label: 'Running', class: 'num', cell: (w) => (w.concurrency ? `${w.inFlight ?? 0} / ${w.concurrency}` : '—') },
    { label: 'In its list', class: 'num', cell: (w) => fmtNum(w.processing) },
    { label: 'Processed', class: 'num', cell: (w) => fmtNum(w.processed) },
    { label: 'Duplicates', class: 'num', cell: (w) => fmtNum(w.duplicates) },
    { label: 'Retried', class: 'num', cell: (w) => fmtNum(w.retried) },
    { label: 'Dead', class: 'num', cell: (w) => fmtNum(w.dead) },
    {
      label: 'Last beat',
      cell: (w) => (w.beat_at ? `${fmtAge((Date.now() - Date.parse(w.beat_at)) / 1000)} ago` : '—'),
    },
    { label: 'Lapses in', cell: (w) => fmtAge(w.ttl_ms / 1000) },
  ];
  const orphaned = o.orphaned.length
    ? [
        h('h3', {}, 'Waiting for the reaper'),
        table(
          'Processing lists without a heartbeat',
          [
            { label: 'Dead worker', cell: (r) => r.id },
            { label: 'Jobs', class: 'num', cell: (r) => fmtNum(r.jobs) },
          ],
          o.orphaned,
        ),
      ]
    : [];
  return [
    h('h2', { id: 'workers-live' }, `${fmtNum(o.workers.length)} worker(s) alive`),
    h(
      'p',
      { class: 'muted small' },
      `Keys under ${o.key_prefix}; completed list ${fmtNum(o.completed)}, dead-letter list ${fmtNum(o.dead_letters)}.`,
    ),
    table('Workers with a live heartbeat', columns, o.workers, { empty: 'No worker has a heartbeat now.' }),
    ...orphaned,
  ];
}

function deadSection(letters, { ctx, selected, replay }) {
  const selectedButton = h('button', { type: 'button', class: 'primary', disabled: true }, 'Replay selected (0)');
  const update = () => {
    selectedButton.textContent = `Replay selected (${selected.size})`;
    selectedButton.disabled = selected.size === 0;
  };
  selectedButton.addEventListener('click', () => replay({ ids: [...selected] }, `${selected.size} selected job(s)`));
  const all = h(
    'button',
    { type: 'button', onclick: () => replay({ all: true }, `All ${letters.total} dead job(s)`) },
    `Replay all ${fmtNum(letters.total)}`,
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
                'aria-label': `Select job ${e.id}`,
                checked: selected.has(e.id),
                onchange: (event) => {
                  if (event.target.checked) selected.add(e.id);
                  else selected.delete(e.id);
                  update();
                },
              }),
          },
        ]),
    { label: 'Job', cell: (e) => e.id || '(no id)' },
    { label: 'From', cell: (e) => `${e.from ?? '—'}${e.kind === 'stream' ? ' (stream)' : ''}` },
    { label: 'Failed', cell: (e) => fmtTime(e.failed_at) },
    { label: 'Retries', class: 'num', cell: (e) => e.retries },
    { label: 'Last error', cell: (e) => h('span', { class: 'error-text' }, e.error || '—') },
    ...(ctx.readOnly
      ? []
      : [
          {
            label: 'Action',
            cell: (e) =>
              h('button', { type: 'button', onclick: () => replay({ ids: [e.id] }, `Job ${e.id}`) }, 'Replay'),
          },
        ]),
  ];
  update();
  return [
    h('h2', { id: 'workers-dead' }, `Dead-letter list: ${fmtNum(letters.total)} job(s)`),
    ctx.readOnly || letters.total === 0 ? null : h('div', { class: 'toolbar' }, selectedButton, all),
    table('Dead jobs, newest first', columns, letters.entries, { empty: 'No dead jobs. Nothing to replay.' }),
    letters.entries.length < letters.total
      ? h('p', { class: 'muted small' }, `Showing the newest ${letters.entries.length} of ${fmtNum(letters.total)}.`)
      : null,
  ];
}
