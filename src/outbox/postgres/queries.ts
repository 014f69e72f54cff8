import type { SqlExecutor } from '../../db/executor.js';
import { NotMigratedError, PgErrorCode, sqlState } from '../../errors.js';
import type { OutboxEvent, OutboxStatus } from '../types.js';
import { EVENTS_TABLE, LANES_TABLE, OUTBOX_CHANNEL, PROGRESS_TABLE } from './tables.js';

// Shared pieces of the operator reads over the write-once outbox (inspect.ts, insights.ts, cleanup.ts).

/** Lanes of the ring (migrations/0008); the listing reads each lane's `(lane, seq)` index on its own. */
export const LANES = 16;

/**
 * Run one statement against the outbox tables; a missing table or function (SQLSTATE 42P01 / 42883, never the message
 * text) becomes `NotMigratedError`, which the admin API answers with 503 `EO_NOT_MIGRATED` and the CLI prints as one
 * line.
 */
export async function queryOutbox<R extends Record<string, unknown>>(
  db: SqlExecutor,
  text: string,
  params?: unknown[],
): Promise<{ rows: R[] }> {
  try {
    return await db.query<R>(text, params);
  } catch (err) {
    const state = sqlState(err);
    if (state === PgErrorCode.undefinedTable || state === PgErrorCode.undefinedFunction) {
      throw new NotMigratedError(EVENTS_TABLE, { cause: err });
    }
    throw err;
  }
}

/**
 * A CTE, `cursor`: each lane's latest cursor row (one index probe per lane into the append-only progress table).
 * Never inlined: it is joined per event.
 */
export const CURSOR_CTE = `cursor AS MATERIALIZED (
    SELECT c.lane, c.done_snap, c.done_lo, c.target_snap, c.pos
      FROM ${LANES_TABLE} l
      CROSS JOIN LATERAL (SELECT p.lane, p.done_snap, p.done_lo, p.target_snap, p.pos FROM ${PROGRESS_TABLE} p
                           WHERE p.lane = l.lane ORDER BY p.b DESC LIMIT 1) c)`;

/**
 * Is event `e` (an events-table row) handled under cursor `c`: visible in its lane's `done` snapshot, or in the
 * interval being read and at or before its position (an interval is read in seq order). A handled event was written,
 * or parked (then its parked copy is what operators see).
 */
export function handledSql(e: string, c: string): string {
  return `(pg_visible_in_snapshot(${e}.txid, ${c}.done_snap)
           OR (${c}.pos IS NOT NULL AND ${e}.seq <= ${c}.pos AND pg_visible_in_snapshot(${e}.txid, ${c}.target_snap)))`;
}

/**
 * The unhandled events of lane `lane` (a literal 0..15), each once: the stragglers, by transaction id (open at the
 * lane's `done` snapshot, or started after it) at or below `done_lo`, and the walk of `(lane, seq)` above `done_lo`
 * (migrations/0009 says why nothing else can be unhandled). Selects `cols` of `e`, with `c` the lane's cursor;
 * `extra` is AND-ed in. Costs the size of the lane's backlog, not of its history.
 */
export function unhandledSql(lane: number, cols: string, extra = 'true'): string {
  const l = laneLiteral(lane);
  const cursor = (col: string) => `(SELECT ${col} FROM cursor WHERE lane = ${l})`;
  return `SELECT ${cols} FROM ${EVENTS_TABLE} e JOIN cursor c ON c.lane = e.lane
           WHERE e.lane = ${l} AND e.txid = ANY (ARRAY(SELECT pg_snapshot_xip(done_snap) FROM cursor WHERE lane = ${l}))
             AND e.seq <= ${cursor('done_lo')} AND NOT ${handledSql('e', 'c')} AND ${extra}
          UNION ALL
          SELECT ${cols} FROM ${EVENTS_TABLE} e JOIN cursor c ON c.lane = e.lane
           WHERE e.lane = ${l} AND e.txid >= ${cursor('pg_snapshot_xmax(done_snap)')}
             AND e.seq <= ${cursor('done_lo')} AND NOT ${handledSql('e', 'c')} AND ${extra}
          UNION ALL
          SELECT ${cols} FROM ${EVENTS_TABLE} e JOIN cursor c ON c.lane = e.lane
           WHERE e.lane = ${l} AND e.seq > ${cursor('done_lo')}
             AND NOT ${handledSql('e', 'c')} AND ${extra}`;
}

export function laneLiteral(lane: number): number {
  if (!Number.isInteger(lane) || lane < 0 || lane >= LANES) throw new RangeError(`not a lane: ${lane}`);
  return lane;
}

/**
 * SQL for the Redis key an event goes to, as the publishers compute it (`destinationOf` in src/outbox/destination.ts):
 * its `queue`, else `queue_pattern` with `{priority}` replaced by the `priority` header when that is `high` or `low`,
 * else by the default. `$p` and `$d` are the parameter numbers of the pattern and the default priority.
 */
export function destinationSql(p: number, d: number, alias = ''): string {
  const a = alias ? `${alias}.` : '';
  return `COALESCE(${a}queue, replace($${p}::text, '{priority}', CASE WHEN ${a}headers->>'priority' IN ('high', 'low')
          THEN ${a}headers->>'priority' ELSE $${d}::text END))`;
}

/** An event as the operator reads show it: an events row with its derived status, or a parked row. */
export interface OutboxRow extends Record<string, unknown> {
  id: string;
  seq: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  payload: unknown;
  headers: Record<string, string>;
  metadata: Record<string, unknown>;
  tenant_id: string;
  queue: string | null;
  status: OutboxStatus;
  retry_count: number;
  max_retries: number | null;
  next_attempt_at: Date;
  last_error: string | null;
  created_at: Date;
}

/**
 * The columns of `OutboxRow` from a parked row `p`. An event waiting behind its aggregate's head has no schedule of its
 * own (`-infinity`): it shows its creation time.
 */
export const PARKED_COLUMNS = (p: string) =>
  `${p}.id, ${p}.seq, ${p}.aggregate_type, ${p}.aggregate_id, ${p}.event_type, ${p}.payload, ${p}.headers,
   ${p}.metadata, ${p}.tenant_id, ${p}.queue, ${p}.status, ${p}.retry_count, ${p}.max_retries,
   GREATEST(${p}.next_attempt_at, ${p}.created_at) AS next_attempt_at, ${p}.last_error, ${p}.created_at`;

/** The columns of `OutboxRow` from an events row `e` under its lane's cursor `c`. */
export const EVENT_COLUMNS = (e: string, c: string) =>
  `${e}.id, ${e}.seq, ${e}.aggregate_type, ${e}.aggregate_id, ${e}.event_type, ${e}.payload, ${e}.headers,
   ${e}.metadata, ${e}.tenant_id, ${e}.queue,
   CASE WHEN ${handledSql(e, c)} THEN 'published' ELSE 'pending' END AS status, 0 AS retry_count, ${e}.max_retries,
   ${e}.created_at AS next_attempt_at, NULL::text AS last_error, ${e}.created_at`;

/**
 * The event operators see. `publishedAt` is not recorded by the write-once outbox (that was the per-event UPDATE it
 * removed): `null` always.
 */
export function rowToEvent(row: OutboxRow): OutboxEvent {
  return {
    id: row.id,
    seq: String(row.seq),
    aggregateId: row.aggregate_id,
    aggregateType: row.aggregate_type,
    eventType: row.event_type,
    payload: row.payload,
    headers: row.headers,
    metadata: row.metadata,
    tenantId: row.tenant_id,
    queue: row.queue,
    status: row.status,
    retryCount: row.retry_count,
    maxRetries: row.max_retries,
    nextAttemptAt: row.next_attempt_at,
    lastError: row.last_error,
    createdAt: row.created_at,
    publishedAt: null,
  };
}

/** Wake relays now (after a replay): the doorbell channel every relay LISTENs on. */
export async function notifyRelays(db: SqlExecutor): Promise<void> {
  await db.query('SELECT pg_notify($1, $2)', [OUTBOX_CHANNEL, '']);
}
