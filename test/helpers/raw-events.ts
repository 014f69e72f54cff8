import type pg from 'pg';

export interface RawEvent {
  aggregateId: string;
  /** Destination list; `null` means the configured queue pattern. */
  queue?: string | null;
  /** JSON text, inserted as written (so number literals reach Postgres untouched). @defaultValue "{}" */
  payload?: string;
  /** A timestamptz literal, e.g. `infinity`. @defaultValue now() */
  createdAt?: string;
}

/**
 * Insert outbox rows with plain SQL, as an operator or another service could, bypassing `storeInOutbox` and its
 * validation: the relay must survive whatever the table holds. Returns the ids in insertion (seq) order.
 */
export async function insertRawEvents(pool: pg.Pool, events: readonly RawEvent[]): Promise<string[]> {
  const ids: string[] = [];
  for (const e of events) {
    const { rows } = await pool.query<{ id: string }>(
      `INSERT INTO exactly_once_outbox (aggregate_id, event_type, payload, queue, created_at)
       VALUES ($1, 'raw.event', $2::jsonb, $3, COALESCE($4::timestamptz, now()))
       RETURNING id`,
      [e.aggregateId, e.payload ?? '{}', e.queue ?? null, e.createdAt ?? null],
    );
    ids.push((rows[0] as { id: string }).id);
  }
  return ids;
}

/** Status, retry count and last error of each event, by id. */
export async function eventStates(
  pool: pg.Pool,
  ids: readonly string[],
): Promise<Map<string, { status: string; retryCount: number; lastError: string | null }>> {
  const { rows } = await pool.query<{ id: string; status: string; retry_count: number; last_error: string | null }>(
    'SELECT id, status, retry_count, last_error FROM exactly_once_outbox WHERE id = ANY($1::uuid[])',
    [ids],
  );
  return new Map(rows.map((r) => [r.id, { status: r.status, retryCount: r.retry_count, lastError: r.last_error }]));
}
