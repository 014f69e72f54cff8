// Table health: sizes, dead tuples, (auto)vacuum times, the oldest open transaction (a held xmin stops cleanup),
// and the cleanup work waiting.
import { api } from '../api.js';
import { fill, fmtAge, fmtBytes, fmtNum, fmtTime, h, heading, stat, table } from '../dom.js';

const latest = (a, b) => (!a ? b : !b ? a : Date.parse(a) > Date.parse(b) ? a : b);

export async function renderTables(root, ctx) {
  const t = await api('GET', '/tables');
  if (!ctx.current()) return;
  const tx = t.oldest_transaction;
  fill(
    root,
    heading('Table health'),
    h(
      'div',
      { class: 'stats' },
      stat('Oldest open transaction', tx ? fmtAge(tx.age_seconds) : 'none', {
        id: 'oldest-tx',
        tone: tx && tx.age_seconds > 300 ? 'warn' : '',
        hint: tx ? `pid ${tx.pid} · ${tx.state ?? '?'} · ${tx.application_name || 'no application name'}` : undefined,
      }),
      stat('Outbox rows due for cleanup', fmtNum(t.cleanup?.outbox_rows_due), { id: 'cleanup-outbox' }),
      stat('Expired idempotency keys', fmtNum(t.cleanup?.idempotency_keys_expired), { id: 'cleanup-keys' }),
    ),
    tx && tx.age_seconds > 300
      ? h(
          'p',
          { class: 'warn-text' },
          'A long open transaction holds back the xmin horizon: vacuum cannot remove dead tuples until it ends.',
        )
      : null,
    h('h2', {}, 'Tables'),
    table(
      'Table sizes and vacuum state',
      [
        { label: 'Table', cell: (r) => h('code', {}, r.name) },
        { label: 'Total', class: 'num', cell: (r) => fmtBytes(r.total_bytes) },
        { label: 'Data', class: 'num', cell: (r) => fmtBytes(r.table_bytes) },
        { label: 'Indexes', class: 'num', cell: (r) => fmtBytes(r.index_bytes) },
        { label: 'Live rows', class: 'num', cell: (r) => fmtNum(r.live_tuples) },
        { label: 'Dead rows', class: 'num', cell: (r) => deadShare(r) },
        { label: 'Last vacuum', cell: (r) => fmtTime(latest(r.last_vacuum, r.last_autovacuum)) },
        { label: 'Last analyze', cell: (r) => fmtTime(latest(r.last_analyze, r.last_autoanalyze)) },
      ],
      t.tables,
    ),
    h('h2', {}, 'Indexes'),
    table(
      'Index sizes',
      [
        { label: 'Table', cell: (r) => h('code', {}, r.table) },
        { label: 'Index', cell: (r) => h('code', {}, r.name) },
        { label: 'Size', class: 'num', cell: (r) => fmtBytes(r.bytes) },
      ],
      t.tables.flatMap((tbl) => (tbl.indexes ?? []).map((i) => ({ ...i, table: tbl.name }))),
    ),
  );
}

function deadShare(r) {
  const total = (r.live_tuples ?? 0) + (r.dead_tuples ?? 0);
  const pct = total > 0 ? ` (${Math.round((100 * r.dead_tuples) / total)}%)` : '';
  return `${fmtNum(r.dead_tuples)}${pct}`;
}
