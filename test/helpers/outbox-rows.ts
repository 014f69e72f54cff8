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
 * Insert outbox rows in a given state and age straight into the table (test setup only: the writer is tested
 * elsewhere). Returns their ids in insertion (seq) order.
 */
export async function seedOutbox(pool: pg.Pool, rows: readonly SeedRow[]): Promise<string[]> {
  if (rows.length === 0) return [];
  const { rows: inserted } = await pool.query<{ id: string }>(
    `INSERT INTO exactly_once_outbox
       (aggregate_id, event_type, payload, status, retry_count, last_error, created_at, published_at)
     SELECT r.aggregate_id, 'test.event', jsonb_build_object('n', r.n), r.status, r.retry_count, r.last_error,
            now() - make_interval(secs => r.age_ms / 1000.0),
            CASE WHEN r.status = 'published' THEN now() - make_interval(secs => r.age_ms / 1000.0) END
       FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::float8[]) WITH ORDINALITY
            AS r(aggregate_id, status, retry_count, last_error, age_ms, n)
      ORDER BY r.n
     RETURNING id`,
    [
      rows.map((r, i) => r.aggregateId ?? `agg-${i}`),
      rows.map((r) => r.status ?? 'pending'),
      rows.map((r) => r.retryCount ?? (r.status === 'failed' ? 5 : 0)),
      rows.map((r) => r.lastError ?? (r.status === 'failed' ? 'boom' : null)),
      rows.map((r) => r.ageMs ?? 0),
    ],
  );
  return inserted.map((r) => r.id);
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
