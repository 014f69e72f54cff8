import type pg from 'pg';

export interface SeedRow {
  status?: 'pending' | 'published' | 'failed';
  /** How long ago the event was created (and, if published, published). @defaultValue 0 */
  ageMs?: number;
  aggregateId?: string;
  retryCount?: number;
  lastError?: string;
}

/**
 * Put outbox events in a given state and age straight into the write-once storage (test setup only: the writer and
 * the relay are tested elsewhere): `pending` as an event no cursor has reached (with `retryCount`, parked and due);
 * `published` as history every cursor has passed (transaction id 3, older than every snapshot); `failed` parked as
 * failed. Returns their ids in order.
 */
export async function seedOutbox(pool: pg.Pool, rows: readonly SeedRow[]): Promise<string[]> {
  const ids: string[] = [];
  for (const [i, r] of rows.entries()) {
    const status = r.status ?? 'pending';
    const retryCount = r.retryCount ?? (status === 'failed' ? 5 : 0);
    const params = [r.aggregateId ?? `agg-${i}`, i + 1, r.ageMs ?? 0];
    const event = (txid: string) =>
      pool.query<{ id: string }>(
        `INSERT INTO exactly_once_outbox_events (${txid ? 'txid, ' : ''}aggregate_id, event_type, payload, created_at)
         VALUES (${txid ? `'${txid}'::xid8, ` : ''}$1, 'test.event', jsonb_build_object('n', $2::int),
                 now() - make_interval(secs => $3::float8 / 1000))
         RETURNING id`,
        params,
      );
    if (status === 'published' || (status === 'pending' && retryCount === 0)) {
      const { rows: inserted } = await event(status === 'published' ? '3' : '');
      ids.push((inserted[0] as { id: string }).id);
      continue;
    }
    const { rows: parked } = await pool.query<{ id: string }>(
      `INSERT INTO exactly_once_outbox_parked
         (id, seq, lane, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, created_at,
          status, retry_count, next_attempt_at, last_error)
       VALUES (gen_random_uuid(), nextval('exactly_once_outbox_events_seq'), hashtext('/' || $1) & 15, '', $1,
               'test.event', jsonb_build_object('n', $2::int), '{}', '{}', '',
               now() - make_interval(secs => $3::float8 / 1000), $4, $5, now(), $6)
       RETURNING id`,
      [...params, status, retryCount, r.lastError ?? (status === 'failed' ? 'boom' : null)],
    );
    ids.push((parked[0] as { id: string }).id);
  }
  return ids;
}

/** Count rows per status. */
export async function outboxCounts(pool: pg.Pool): Promise<Record<'pending' | 'published' | 'failed', number>> {
  const { rows } = await pool.query<{ status: string; n: number }>(
    'SELECT status, count(*)::int AS n FROM exactly_once_outbox GROUP BY status',
  );
  const out = { pending: 0, published: 0, failed: 0 };
  for (const r of rows) out[r.status as keyof typeof out] = r.n;
  return out;
}

/**
 * Retention setup: close the ring's current partition as if it had opened `openedAgoMs` and closed `closedAgoMs` ago,
 * and make the next one current (as `exactly_once_outbox_rotate` does, back-dated). Events written after this go to
 * the new partition.
 */
export async function closeCurrentPartition(pool: pg.Pool, openedAgoMs: number, closedAgoMs: number): Promise<void> {
  await pool.query(
    `WITH m AS (SELECT current_part AS cur, (current_part + 1) % parts AS nxt FROM exactly_once_outbox_meta),
          closed AS (UPDATE exactly_once_outbox_parts p
                        SET opened_at = now() - make_interval(secs => $1::float8 / 1000),
                            closed_at = now() - make_interval(secs => $2::float8 / 1000)
                       FROM m WHERE p.part = m.cur),
          opened AS (UPDATE exactly_once_outbox_parts p SET opened_at = now(), closed_at = NULL FROM m WHERE p.part = m.nxt)
     UPDATE exactly_once_outbox_meta SET current_part = (SELECT nxt FROM m)`,
    [openedAgoMs, closedAgoMs],
  );
}
