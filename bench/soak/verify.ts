import type pg from 'pg';

export interface SoakVerdict {
  committed: number;
  /** committed events with no effect row */
  lost: number;
  /** effect rows beyond the first of an event */
  duplicated: number;
  /** effects applied out of their aggregate's write order */
  reordered: number;
  /** effect rows or outbox rows of events whose transaction rolled back (or that nobody committed) */
  phantoms: number;
  /** outbox rows that ended `failed` */
  failed: number;
  ok: boolean;
}

/** Check the soak's outcome from the data: the producers' ledger, the effect rows and the outbox. */
export async function verify(pool: pg.Pool, rolledBack: ReadonlySet<string>): Promise<SoakVerdict> {
  const committed = new Map<string, { aggregate: string; n: number }>();
  for (const r of (
    await pool.query<{ event_id: string; aggregate_id: string; n: number }>('SELECT * FROM soak_committed')
  ).rows) {
    committed.set(r.event_id, { aggregate: r.aggregate_id, n: r.n });
  }
  const effects = (
    await pool.query<{ event_id: string; aggregate_id: string; n: number }>(
      'SELECT event_id, aggregate_id, n FROM soak_effects ORDER BY id',
    )
  ).rows;
  const seen = new Map<string, number>();
  let phantoms = 0;
  let reordered = 0;
  const next = new Map<string, number>();
  for (const e of effects) {
    seen.set(e.event_id, (seen.get(e.event_id) ?? 0) + 1);
    if (!committed.has(e.event_id) || rolledBack.has(e.event_id)) {
      phantoms++;
      continue;
    }
    if ((seen.get(e.event_id) ?? 0) > 1) continue;
    // One consumer handles an aggregate (its list), one job at a time: effect order is delivery order.
    if (e.n !== (next.get(e.aggregate_id) ?? 0)) reordered++;
    next.set(e.aggregate_id, e.n + 1);
  }
  let lost = 0;
  for (const id of committed.keys()) if (!seen.has(id)) lost++;
  let duplicated = 0;
  for (const c of seen.values()) if (c > 1) duplicated += c - 1;
  const outbox = await pool.query<{ id: string; status: string }>('SELECT id, status FROM exactly_once_outbox');
  let failed = 0;
  for (const r of outbox.rows) {
    if (r.status === 'failed') failed++;
    if (!committed.has(r.id) || rolledBack.has(r.id)) phantoms++;
  }
  if (outbox.rows.length !== committed.size) lost += Math.max(0, committed.size - outbox.rows.length);
  return {
    committed: committed.size,
    lost,
    duplicated,
    reordered,
    phantoms,
    failed,
    ok: lost === 0 && duplicated === 0 && reordered === 0 && phantoms === 0 && failed === 0,
  };
}
