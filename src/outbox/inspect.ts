import { InvalidParameterError, NotMigratedError, PgErrorCode, sqlState } from '../errors.js';
import { UUID_RE } from './ids.js';
import { OUTBOX_CHANNEL, OUTBOX_TABLE, type OutboxRow, rowToEvent } from './rows.js';
import type { OutboxEvent, OutboxStatus } from './types.js';

/** Anything that runs a parameterised statement: a pg Pool, Client or PoolClient. */
export interface Queryable {
  // biome-ignore lint/suspicious/noExplicitAny: matches pg's own signature so a Pool fits structurally
  query<R extends Record<string, unknown> = any>(text: string, params?: any[]): Promise<{ rows: R[] }>;
}

/**
 * Run one statement against the outbox table; a missing table (SQLSTATE 42P01, never the message text) becomes
 * `NotMigratedError`, which the admin API answers with 503 `EO_NOT_MIGRATED` and the CLI prints as one line.
 */
export async function queryOutbox<R extends Record<string, unknown>>(
  db: Queryable,
  text: string,
  params?: unknown[],
): Promise<{ rows: R[] }> {
  try {
    return await db.query<R>(text, params);
  } catch (err) {
    if (sqlState(err) === PgErrorCode.undefinedTable) throw new NotMigratedError(OUTBOX_TABLE, { cause: err });
    throw err;
  }
}

export const OUTBOX_STATUSES: readonly OutboxStatus[] = ['pending', 'published', 'failed'];
export const LIST_DEFAULT_LIMIT = 50;
export const LIST_MAX_LIMIT = 1000;
/** Ids one retry call may name; more belongs in `allFailed`. */
export const RETRY_MAX_IDS = 1000;

export interface ListOutboxOptions {
  /** Only events in this state. @defaultValue every state */
  status?: OutboxStatus;
  /** Page size, 1..1000. @defaultValue 50 */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

export interface OutboxPage {
  events: OutboxEvent[];
  /** Pass as `cursor` to get the next page; `null` on the last page. */
  nextCursor: string | null;
}

/**
 * One page of outbox events in write order (oldest first), for operators. Keyset pagination on `seq`, so a page
 * costs the same at the millionth row as at the first, and rows inserted meanwhile never shift a page. With a
 * status, the scan rides the partial indexes of migrations/0001 (`_pending`, `_failed`).
 * Throws `InvalidParameterError` naming `status`, `limit` or `cursor`.
 *
 * @example const { events, nextCursor } = await listOutboxEvents(pool, { status: 'failed', limit: 20 });
 */
export async function listOutboxEvents(db: Queryable, options: ListOutboxOptions = {}): Promise<OutboxPage> {
  const status = options.status;
  if (status !== undefined && !OUTBOX_STATUSES.includes(status)) {
    throw new InvalidParameterError('status', `must be one of ${OUTBOX_STATUSES.join(', ')}`);
  }
  const limit = options.limit ?? LIST_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > LIST_MAX_LIMIT) {
    throw new InvalidParameterError('limit', `must be an integer from 1 to ${LIST_MAX_LIMIT}`);
  }
  const after = options.cursor === undefined ? '0' : decodeCursor(options.cursor);
  // One row more than asked tells whether another page exists without a count(*).
  const { rows } = await queryOutbox<OutboxRow>(
    db,
    `SELECT * FROM ${OUTBOX_TABLE}
      WHERE seq > $1::bigint AND ($2::text IS NULL OR status = $2::text)
      ORDER BY seq
      LIMIT $3`,
    [after, status ?? null, limit + 1],
  );
  const page = rows.slice(0, limit).map(rowToEvent);
  const last = page[page.length - 1];
  return { events: page, nextCursor: rows.length > limit && last ? encodeCursor(last.seq) : null };
}

/** Which failed events to replay: named ones, or every failed event. */
export type RetrySelection = { ids: readonly string[] } | { allFailed: true };

export interface RetryResult {
  /** Events moved from `failed` back to `pending`. */
  retried: number;
  /** With `ids`: the ids that were replayed (ids that were not `failed` are left alone and not listed). */
  ids?: string[];
}

/**
 * Replay dead events: `failed` -> `pending` with `retry_count` 0 and due now, then `NOTIFY` so relays pick them up at
 * once. Events in any other state are left alone (replaying a published event would publish it twice).
 * `allFailed` works in batches of 1000 so it never holds many row locks at once.
 *
 * @example await retryOutboxEvents(pool, { ids: [eventId] }); await retryOutboxEvents(pool, { allFailed: true });
 */
export async function retryOutboxEvents(db: Queryable, selection: RetrySelection): Promise<RetryResult> {
  if ('ids' in selection) {
    const ids = validateIds(selection.ids);
    const { rows } = await queryOutbox<{ id: string }>(
      db,
      `UPDATE ${OUTBOX_TABLE}
          SET status = 'pending', retry_count = 0, next_attempt_at = now()
        WHERE id = ANY($1::uuid[]) AND status = 'failed'
        RETURNING id`,
      [ids],
    );
    if (rows.length > 0) await notifyRelays(db);
    return { retried: rows.length, ids: rows.map((r) => r.id) };
  }
  if (selection.allFailed !== true) throw new InvalidParameterError('all_failed', 'must be true');
  let retried = 0;
  for (;;) {
    // SKIP LOCKED: a row an operator's concurrent call already holds is theirs to replay.
    const { rows } = await queryOutbox<{ n: number }>(
      db,
      `WITH batch AS (
         SELECT seq FROM ${OUTBOX_TABLE} WHERE status = 'failed' ORDER BY seq LIMIT 1000 FOR UPDATE SKIP LOCKED
       ), moved AS (
         UPDATE ${OUTBOX_TABLE} o SET status = 'pending', retry_count = 0, next_attempt_at = now()
           FROM batch WHERE o.seq = batch.seq RETURNING 1
       )
       SELECT count(*)::int AS n FROM moved`,
    );
    const n = rows[0]?.n ?? 0;
    retried += n;
    if (n > 0) await notifyRelays(db);
    if (n < 1000) break;
  }
  return { retried };
}

export interface OutboxBacklog {
  pending: number;
  failed: number;
  /** Seconds since the oldest pending event was written (database clock); 0 when nothing is pending. */
  oldestPendingAgeSeconds: number;
}

/**
 * Backlog counters for gauges and `stats`. Each count is an index-only scan of a partial index (the size of the
 * backlog, not of retained history); the oldest pending event is the first entry of the `_pending` index.
 *
 * @example const { pending, failed, oldestPendingAgeSeconds } = await outboxBacklog(pool);
 */
export async function outboxBacklog(db: Queryable): Promise<OutboxBacklog> {
  const { rows } = await queryOutbox<{ pending: string; failed: string; age: number | null }>(
    db,
    `SELECT
       (SELECT count(*) FROM ${OUTBOX_TABLE} WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM ${OUTBOX_TABLE} WHERE status = 'failed') AS failed,
       extract(epoch FROM now() - (SELECT created_at FROM ${OUTBOX_TABLE} WHERE status = 'pending' ORDER BY seq LIMIT 1))::float8 AS age`,
  );
  const row = rows[0];
  return {
    pending: Number(row?.pending ?? 0),
    failed: Number(row?.failed ?? 0),
    oldestPendingAgeSeconds: Math.max(0, row?.age ?? 0),
  };
}

async function notifyRelays(db: Queryable): Promise<void> {
  await db.query('SELECT pg_notify($1, $2)', [OUTBOX_CHANNEL, '']);
}

function validateIds(ids: unknown): string[] {
  if (!Array.isArray(ids)) throw new InvalidParameterError('ids', 'must be an array of event ids');
  if (ids.length === 0) throw new InvalidParameterError('ids', 'must name at least one event id');
  if (ids.length > RETRY_MAX_IDS) {
    throw new InvalidParameterError('ids', `at most ${RETRY_MAX_IDS} ids per call; use all_failed for more`);
  }
  ids.forEach((id, i) => {
    if (typeof id !== 'string' || !UUID_RE.test(id)) throw new InvalidParameterError(`ids[${i}]`, 'must be a UUID');
  });
  return ids as string[];
}

const CURSOR_RE = /^seq:(\d{1,19})$/;

/** Opaque to callers; a base64url of the last seq seen. */
/** The `nextCursor` that continues a listing after the event with this `seq`. */
export function encodeCursor(seq: string): string {
  return Buffer.from(`seq:${seq}`).toString('base64url');
}

function decodeCursor(cursor: string): string {
  const m = typeof cursor === 'string' ? CURSOR_RE.exec(Buffer.from(cursor, 'base64url').toString('utf8')) : null;
  // Re-encoding must give the same text: base64url decoding alone skips characters it does not know.
  if (!m || encodeCursor(m[1] as string) !== cursor || BigInt(m[1] as string) > 9_223_372_036_854_775_807n) {
    throw new InvalidParameterError('cursor', 'is not a cursor this API returned');
  }
  return m[1] as string;
}
