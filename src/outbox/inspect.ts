import type { SqlExecutor } from '../db/executor.js';

/** @deprecated transitional name of `SqlExecutor`; removed once src/outbox/inspector.ts moves over. */
export type Queryable = SqlExecutor;

// The executor type is SqlExecutor (db/executor.ts); this name stays only until the dashboard's new modules move to it.

import { InvalidParameterError, NotMigratedError, PgErrorCode, sqlState } from '../errors.js';
import { UUID_RE } from './ids.js';
import { PAYLOAD_PREVIEW_BYTES, payloadPreview } from './payload-preview.js';
import { OUTBOX_CHANNEL, OUTBOX_TABLE, type OutboxRow, rowToEvent } from './rows.js';
import type { OutboxEvent, OutboxStatus } from './types.js';

/**
 * Run one statement against the outbox table; a missing table (SQLSTATE 42P01, never the message text) becomes
 * `NotMigratedError`, which the admin API answers with 503 `EO_NOT_MIGRATED` and the CLI prints as one line.
 */
export async function queryOutbox<R extends Record<string, unknown>>(
  db: SqlExecutor,
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
/** The outbox columns but `payload`: a preview listing reads these and the payload's preview instead. */
const PREVIEW_COLUMNS = `id, seq, aggregate_type, aggregate_id, event_type, headers, metadata, tenant_id, queue, status,
       retry_count, max_retries, next_attempt_at, last_error, created_at, published_at`;
export const LIST_DEFAULT_LIMIT = 50;
export const LIST_MAX_LIMIT = 1000;
/** Ids one retry call may name; more belongs in `allFailed`. */
export const RETRY_MAX_IDS = 1000;

export interface ListOutboxOptions {
  /** Only events in this state. @defaultValue every state */
  status?: OutboxStatus;
  /**
   * Only events that go to this Redis key: their own `queue` column when set, else the list `queue_pattern` names for
   * their `priority` header (see `destinations`). Exact match.
   */
  queue?: string;
  /** How events without a `queue` pick their list; needed to match them with `queue`. @defaultValue the config defaults */
  destinations?: DestinationRule;
  /** Exact match on `aggregate_type` (`''` is the default type). */
  aggregateType?: string;
  /** Exact match on `aggregate_id`. */
  aggregateId?: string;
  /** Exact match on `event_type`. */
  eventType?: string;
  /** Exact match on `tenant_id` (`''`: the tenant-less events). */
  tenantId?: string;
  /** Only events written at or after this time (`created_at`). */
  since?: Date;
  /** Only events written before this time (`created_at`). */
  until?: Date;
  /** `asc`: oldest first; `desc`: newest first. Both are keyset pages on `seq`. @defaultValue "asc" */
  order?: 'asc' | 'desc';
  /** Page size, 1..1000. @defaultValue 50 */
  limit?: number;
  /** `nextCursor` of the previous page (of the same `order`). */
  cursor?: string;
  /**
   * `preview`: each event carries `payloadPreview` (the start of its payload's JSON text and its size) and no
   * `payload`, so a page of large payloads stays small (src/outbox/payload-preview.ts). @defaultValue "full"
   */
  payload?: 'full' | 'preview';
}

/** `outbox.queue_pattern` and `outbox.default_priority`: the list an event without `queue` is pushed to. */
export interface DestinationRule {
  queuePattern: string;
  defaultPriority: 'high' | 'low';
}

export const DEFAULT_DESTINATIONS: DestinationRule = {
  queuePattern: 'jobqueue:{priority}_priority',
  defaultPriority: 'low',
};

/**
 * SQL for the Redis key an event goes to, as the publishers compute it (`keyFor` in src/publishers/marked-batch.ts):
 * its `queue`, else `queue_pattern` with `{priority}` replaced by the `priority` header when that is `high` or `low`,
 * else by the default. `$p` and `$d` are the parameter numbers of the pattern and the default priority.
 */
export function destinationSql(p: number, d: number, alias = ''): string {
  const a = alias ? `${alias}.` : '';
  return `COALESCE(${a}queue, replace($${p}::text, '{priority}', CASE WHEN ${a}headers->>'priority' IN ('high', 'low')
          THEN ${a}headers->>'priority' ELSE $${d}::text END))`;
}

export interface OutboxPage {
  events: OutboxEvent[];
  /** Pass as `cursor` to get the next page; `null` on the last page. */
  nextCursor: string | null;
}

/**
 * One page of outbox events in write order (oldest first, or newest first with `order: 'desc'`), for operators.
 * Keyset pagination on `seq`, so a page costs the same at the millionth row as at the first, and rows inserted
 * meanwhile never shift a page. Every filter is an exact match, combined with AND.
 *
 * Which index serves which filter (EXPLAIN ANALYZE on 1,000,000 rows, migrations/0007 has the figures):
 * - none, `eventType`, `tenantId`, `queue`: the `_seq` index in page order, filtering as it goes. Quick while matches
 *   are common (a few ms); a value that matches almost nothing walks the table until the page fills, up to the
 *   admin pool's statement timeout. Narrow such searches with `since`/`until` or an aggregate.
 * - `status`: the partial `_pending` / `_failed` indexes (published: `_seq`).
 * - `aggregateId` with `status: 'pending'`: 0001's `_pending_aggregate`. Over history (other statuses) it walks
 *   `_seq` like `eventType` (hundreds of ms a page at 1M rows): migrations/0007 says why there is no index for it.
 *   `aggregateType` alone is a common value and filters like `eventType`.
 * - `since` / `until`: exact on `created_at`, walking `_seq` from the page start: a narrow window far from it walks
 *   the rows in between (seconds at millions of rows); migrations/0007 says why there is no index for it.
 *
 * Throws `InvalidParameterError` naming the offending option.
 *
 * @example const { events, nextCursor } = await listOutboxEvents(pool, { status: 'failed', limit: 20 });
 * @example await listOutboxEvents(pool, { aggregateType: 'order', aggregateId: 'o-42', order: 'desc' });
 */
export async function listOutboxEvents(db: SqlExecutor, options: ListOutboxOptions = {}): Promise<OutboxPage> {
  const { status, limit, order } = pageOptions(options);
  const params: unknown[] = [];
  const where: string[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  if (options.cursor !== undefined) {
    where.push(`seq ${order === 'asc' ? '>' : '<'} ${param(decodeCursor(options.cursor))}::bigint`);
  }
  // Literal status, so the planner can match the partial indexes.
  if (status) where.push(`status = '${status}'`);
  for (const [column, value, name] of [
    ['aggregate_type', options.aggregateType, 'aggregateType'],
    ['aggregate_id', options.aggregateId, 'aggregateId'],
    ['event_type', options.eventType, 'eventType'],
    ['tenant_id', options.tenantId, 'tenantId'],
  ] as const) {
    if (value === undefined) continue;
    if (typeof value !== 'string') throw new InvalidParameterError(name, 'must be a string');
    where.push(`${column} = ${param(value)}::text`);
  }
  for (const [op, value, name] of [
    ['>=', options.since, 'since'],
    ['<', options.until, 'until'],
  ] as const) {
    if (value === undefined) continue;
    if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
      throw new InvalidParameterError(name, 'must be a valid time');
    }
    where.push(`created_at ${op} ${param(value)}::timestamptz`);
  }
  if (options.queue !== undefined) where.push(queueMatch(options.queue, options.destinations, param));
  // Previews: the payload never leaves Postgres whole, only its first characters (at most 4 bytes each, trimmed to
  // PAYLOAD_PREVIEW_BYTES below) and its size. jsonb has no cheaper way to either than printing the value, so each row
  // prints it once, in the page's subquery (20 payloads of 10 MB: the same server work as listing them whole was,
  // without sending or parsing 200 MB).
  const preview = options.payload === 'preview';
  // One row more than asked tells whether another page exists without a count(*).
  const page = `SELECT ${preview ? `${PREVIEW_COLUMNS}, payload::text AS payload_text` : '*'} FROM ${OUTBOX_TABLE}
      ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY seq ${order === 'asc' ? 'ASC' : 'DESC'}
      LIMIT ${param(limit + 1)}`;
  const { rows } = await queryOutbox<OutboxRow & { payload_preview?: string; payload_bytes?: number }>(
    db,
    // The comment names the statement in pg_stat_activity, for operators (and the admin pool test) to find it.
    preview
      ? `/* exactly-once: list outbox */ SELECT ${PREVIEW_COLUMNS},
           left(payload_text, ${param(PAYLOAD_PREVIEW_BYTES)}::int) AS payload_preview,
           octet_length(payload_text) AS payload_bytes
         FROM (${page}) page ORDER BY seq ${order === 'asc' ? 'ASC' : 'DESC'}`
      : `/* exactly-once: list outbox */ ${page}`,
    params,
  );
  const events = rows.slice(0, limit).map((row) => {
    if (!preview) return rowToEvent(row);
    return {
      ...rowToEvent({ ...row, payload: undefined }),
      payloadPreview: payloadPreview(row.payload_preview ?? 'null', Number(row.payload_bytes ?? 4)),
    };
  });
  const last = events[events.length - 1];
  return { events, nextCursor: rows.length > limit && last ? encodeCursor(last.seq) : null };
}

/**
 * Events whose destination is `queue`: those naming it in their `queue` column, and, when it is one of the lists
 * `queue_pattern` produces, those without a `queue` whose priority leads there. The priorities are worked out here,
 * so the common case (a queue the pattern cannot produce) stays a plain equality.
 */
function queueMatch(queue: string, rule: DestinationRule | undefined, param: (v: unknown) => string): string {
  if (typeof queue !== 'string') throw new InvalidParameterError('queue', 'must be a string');
  const { queuePattern, defaultPriority } = rule ?? DEFAULT_DESTINATIONS;
  const priorities = (['high', 'low'] as const).filter((p) => queuePattern.replaceAll('{priority}', p) === queue);
  const own = `queue = ${param(queue)}::text`;
  if (priorities.length === 0) return own;
  const effective = `CASE WHEN headers->>'priority' IN ('high', 'low') THEN headers->>'priority' ELSE ${param(defaultPriority)}::text END`;
  return `(${own} OR (queue IS NULL AND ${effective} = ANY(${param(priorities)}::text[])))`;
}

/**
 * One event by id, or `undefined`. Throws `InvalidParameterError` naming `id` when it is not a UUID.
 *
 * @example const event = await getOutboxEvent(pool, id);
 */
export async function getOutboxEvent(db: SqlExecutor, id: string): Promise<OutboxEvent | undefined> {
  if (typeof id !== 'string' || !UUID_RE.test(id)) throw new InvalidParameterError('id', 'must be a UUID');
  const { rows } = await queryOutbox<OutboxRow>(db, `SELECT * FROM ${OUTBOX_TABLE} WHERE id = $1::uuid`, [id]);
  return rows[0] ? rowToEvent(rows[0]) : undefined;
}

/**
 * Which failed events to replay: named ones, every failed event, or every failed event whose `last_error` is exactly
 * `error` (`null`: those without one), as `failedGroups` lists them.
 */
export type RetrySelection = { ids: readonly string[] } | { allFailed: true } | { error: string | null };

export interface RetryResult {
  /** Events moved from `failed` back to `pending`. */
  retried: number;
  /** With `ids`: the ids that were replayed (ids that were not `failed` are left alone and not listed). */
  ids?: string[];
}

/**
 * Replay dead events: `failed` -> `pending` with `retry_count` 0 and due now, then `NOTIFY` so relays pick them up at
 * once. Events in any other state are left alone (replaying a published event would publish it twice).
 * `allFailed` and `error` work in batches of 1000 so they never hold many row locks at once.
 *
 * @example await retryOutboxEvents(pool, { ids: [eventId] }); await retryOutboxEvents(pool, { allFailed: true });
 * @example await retryOutboxEvents(pool, { error: 'WRONGTYPE Operation against a key holding the wrong kind of value' });
 */
export async function retryOutboxEvents(db: SqlExecutor, selection: RetrySelection): Promise<RetryResult> {
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
  let errorMatch = '';
  const params: unknown[] = [];
  if ('error' in selection) {
    const error = selection.error;
    if (error !== null && typeof error !== 'string')
      throw new InvalidParameterError('error', 'must be a string or null');
    // IS NOT DISTINCT FROM: the group of events that failed without an error text is replayable too.
    errorMatch = 'AND last_error IS NOT DISTINCT FROM $1::text';
    params.push(error);
  } else if (selection.allFailed !== true) throw new InvalidParameterError('all_failed', 'must be true');
  let retried = 0;
  for (;;) {
    // SKIP LOCKED: a row an operator's concurrent call already holds is theirs to replay.
    const { rows } = await queryOutbox<{ n: number }>(
      db,
      `WITH batch AS (
         SELECT seq FROM ${OUTBOX_TABLE} WHERE status = 'failed' ${errorMatch}
          ORDER BY seq LIMIT 1000 FOR UPDATE SKIP LOCKED
       ), moved AS (
         UPDATE ${OUTBOX_TABLE} o SET status = 'pending', retry_count = 0, next_attempt_at = now()
           FROM batch WHERE o.seq = batch.seq RETURNING 1
       )
       SELECT count(*)::int AS n FROM moved`,
      params,
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
export async function outboxBacklog(db: SqlExecutor): Promise<OutboxBacklog> {
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

async function notifyRelays(db: SqlExecutor): Promise<void> {
  await db.query('SELECT pg_notify($1, $2)', [OUTBOX_CHANNEL, '']);
}

/** The `ids` of a retry selection, checked (both storages' inspectors use it). */
/** The status, page size and order of a listing, checked and defaulted (both outbox storages list with them). */
export function pageOptions(options: Pick<ListOutboxOptions, 'status' | 'limit' | 'order'>): {
  status: OutboxStatus | undefined;
  limit: number;
  order: 'asc' | 'desc';
} {
  const status = options.status;
  if (status !== undefined && !OUTBOX_STATUSES.includes(status)) {
    throw new InvalidParameterError('status', `must be one of ${OUTBOX_STATUSES.join(', ')}`);
  }
  const limit = options.limit ?? LIST_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > LIST_MAX_LIMIT) {
    throw new InvalidParameterError('limit', `must be an integer from 1 to ${LIST_MAX_LIMIT}`);
  }
  const order = options.order ?? 'asc';
  if (order !== 'asc' && order !== 'desc') throw new InvalidParameterError('order', 'must be one of asc, desc');
  return { status, limit, order };
}

export function validateIds(ids: unknown): string[] {
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
