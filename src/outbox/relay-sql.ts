import { OUTBOX_TABLE } from './rows.js';
import type { ClaimedEvent } from './types.js';

/*
 * The relay's hot-path statements. A batch is one transaction on one connection, in three round trips:
 *
 *   1. claimBatchSql(), one simple-protocol message:
 *        BEGIN; SET LOCAL idle_in_transaction_session_timeout   -- a wedged relay's claim is released (G5)
 *        SET LOCAL jit = off
 *        LOCK_AGGREGATES   -- pick aggregates, take their transaction-scoped advisory locks, note them in a
 *                             transaction-local setting
 *        CLAIM             -- fresh snapshot: read those aggregates' due events, FOR UPDATE SKIP LOCKED
 *   2. ... publish to Redis in one round trip ...
 *   3. markPublishedSql(): MARK; COMMIT in one message when every event was published (the common case); otherwise
 *      the parameterised MARK_SQL (retry with backoff / failed), then COMMIT.
 *   COMMIT releases row locks and advisory locks together.
 *
 * Why two statements to claim: row locks alone cannot keep an aggregate's order with N relays. Relay A may lock
 * events 1..50 of aggregate X while relay B skips them and takes 51..60, publishing 51 before 1. An advisory lock per
 * aggregate gives one relay the whole aggregate for the transaction. The events are read by a *second* statement
 * because its snapshot starts after the lock was granted, so it sees everything the previous holder committed
 * (with one statement, a snapshot taken just before the previous holder's COMMIT could still show its events as
 * pending, and a retry it scheduled as due). Statements of one simple-protocol message still take a snapshot each, so
 * sending both in one message keeps that property and saves two round trips; the lock statement hands its aggregates
 * to the claim through `set_config(..., is_local => true)`, which lives only until the transaction ends.
 *
 * Measured (bench drain, 30,000 events over 1,000 aggregates, batch 50, one loop, 2 cores): BEGIN, LOCK and CLAIM as
 * three round trips took 0.45 + 1.4 + 1.5 ms a batch; MARK then COMMIT 2.0 + 1.3 ms. See docs/performance.md for the
 * figures after the change.
 */

/** Advisory-lock namespace of outbox aggregates (first key of the two-int lock). */
const LOCK_SPACE = `hashtext('${OUTBOX_TABLE}')`;
/** Transaction-local setting that carries the locked aggregates from LOCK_AGGREGATES to CLAIM. */
const CLAIM_SETTING = 'exactly_once.claim';

/**
 * Claim window, batch size. Looks at the oldest `window` due events in write order (partial index on pending seq),
 * skips events with an earlier event of their aggregate waiting for a retry (a probe into the small `_retrying` index,
 * migrations/0003: every pending event not due yet has `retry_count > 0`), and tries the aggregate's advisory lock.
 * The CASE makes Postgres try the lock only after that check passed; the LIMIT on the CTE scan (no ORDER BY
 * there, the CTE already yields seq order) stops after `batch` rows, so we lock no more aggregates than we will use.
 * Reentrant: later rows of an aggregate we already hold pass again. Stores `[{t: type, i: id, n: rows seen}, ...]` in the
 * transaction-local setting CLAIM reads.
 */
function lockAggregatesSql(window: number, batch: number): string {
  return `
  WITH cand AS MATERIALIZED (
    SELECT seq, aggregate_type, aggregate_id
    FROM ${OUTBOX_TABLE}
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY seq
    LIMIT ${window}
  ), locked AS (
    SELECT c.aggregate_type, c.aggregate_id
    FROM cand c
    WHERE CASE
      WHEN EXISTS (SELECT 1
                   FROM ${OUTBOX_TABLE} h
                   WHERE h.status = 'pending' AND h.retry_count > 0 AND h.aggregate_type = c.aggregate_type
                     AND h.aggregate_id = c.aggregate_id AND h.seq < c.seq AND h.next_attempt_at > now())
      THEN false
      ELSE pg_try_advisory_xact_lock(${LOCK_SPACE}, hashtext(c.aggregate_type || '/' || c.aggregate_id))
    END
    LIMIT ${batch}
  )
  SELECT set_config('${CLAIM_SETTING}', COALESCE(json_agg(json_build_object('t', t, 'i', i, 'n', n))::text, '[]'), true)
  FROM (SELECT aggregate_type AS t, aggregate_id AS i, count(*) AS n FROM locked GROUP BY 1, 2) g`;
}

/**
 * Batch size. For each locked aggregate, its first `n` pending events in order, `n` being how many of its events the
 * lock scan saw (LATERAL + the pending-aggregate index, so a hot aggregate with a million-event backlog costs `n` rows,
 * not a million), cut at the first event that is not due yet: events after a failing one wait for it. Then the oldest
 * `batch` of those across aggregates, locked. JSON comes back as text for the job builder; filepath and filesize are
 * extracted here so Node never parses payloads.
 *
 * Measured (same bench as above): reading a whole batch size per aggregate (50 x 50 = 2,500 rows, then a window sort
 * on text keys) took 5.5 ms a batch; reading as many as the lock scan saw (50 rows) takes ~1.5 ms.
 */
function claimSql(batch: number): string {
  return `
  SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.tenant_id, o.queue, o.retry_count,
         o.max_retries, o.created_at, o.payload::text AS payload, o.headers::text AS headers,
         o.headers->>'priority' AS priority, o.headers->>'traceparent' AS traceparent,
         CASE WHEN jsonb_typeof(o.payload->'filepath') = 'string' THEN o.payload->>'filepath' END AS filepath,
         CASE WHEN jsonb_typeof(o.payload->'filesize') = 'number' THEN o.payload->>'filesize' END AS filesize
  FROM ${OUTBOX_TABLE} o
  WHERE o.seq IN (
    SELECT seq FROM (
      SELECT p.seq,
             bool_and(p.next_attempt_at <= now()) OVER (PARTITION BY a.t, a.i ORDER BY p.seq) AS due_prefix
      FROM json_to_recordset(current_setting('${CLAIM_SETTING}')::json) AS a(t text, i text, n int)
      CROSS JOIN LATERAL (
        SELECT seq, next_attempt_at
        FROM ${OUTBOX_TABLE}
        WHERE status = 'pending' AND aggregate_type = a.t AND aggregate_id = a.i
        ORDER BY seq
        LIMIT a.n
      ) p
    ) x
    WHERE due_prefix
    ORDER BY seq
    LIMIT ${batch}
  )
  AND o.status = 'pending'
  ORDER BY o.seq
  FOR UPDATE SKIP LOCKED`;
}

/**
 * The first round trip of a batch (simple protocol: several statements, no parameters; every interpolated value is an
 * integer from the validated config). The last result holds the claimed rows.
 */
export function claimBatchSql(options: { window: number; batch: number; claimTimeoutMs: number }): string {
  const int = (n: number) => {
    if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`expected a positive integer, got ${n}`);
    return n;
  };
  return [
    'BEGIN',
    `SET LOCAL idle_in_transaction_session_timeout = ${int(options.claimTimeoutMs)}`,
    // The planner cannot see how many aggregates the setting holds and guesses costs high enough to JIT-compile the
    // claim: 16 ms of compilation for a 0.4 ms query (measured, EXPLAIN ANALYZE on the hot-aggregate drain).
    'SET LOCAL jit = off',
    lockAggregatesSql(int(options.window), int(options.batch)),
    claimSql(int(options.batch)),
  ].join(';\n');
}

/** Mark a batch published and commit, in one message. Seqs are bigint text as Postgres returned them. */
export function markPublishedSql(seqs: readonly string[]): string {
  const list = seqs.join(',');
  if (!/^[0-9,]*$/.test(list)) throw new RangeError('seq values must be integers');
  return `UPDATE ${OUTBOX_TABLE} SET status = 'published', published_at = now()
          WHERE seq = ANY('{${list}}'::bigint[]) AND status = 'pending';
          COMMIT`;
}

/**
 * $1 seqs, $2 new status, $3 retry delay in ms (null when published), $4 error text. One statement for the whole
 * batch; retry times use the database clock so relays with skewed clocks agree.
 */
export const MARK_SQL = `
  UPDATE ${OUTBOX_TABLE} o SET
    status = r.status,
    published_at = CASE WHEN r.status = 'published' THEN now() ELSE o.published_at END,
    retry_count = o.retry_count + CASE WHEN r.status = 'published' THEN 0 ELSE 1 END,
    next_attempt_at = CASE WHEN r.delay_ms IS NULL THEN o.next_attempt_at
                           ELSE now() + r.delay_ms * interval '1 millisecond' END,
    last_error = COALESCE(r.err, o.last_error)
  FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[]) AS r(seq, status, delay_ms, err)
  WHERE o.seq = r.seq`;

/** A row of the claim statement as pg returns it (bigints and JSON as text). */
export interface ClaimRow {
  seq: string;
  id: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  tenant_id: string;
  queue: string | null;
  retry_count: number;
  max_retries: number | null;
  created_at: Date;
  payload: string;
  headers: string;
  priority: string | null;
  traceparent: string | null;
  filepath: string | null;
  filesize: string | null;
}

export function toClaimed(r: ClaimRow): ClaimedEvent {
  return {
    seq: r.seq,
    id: r.id,
    aggregateType: r.aggregate_type,
    aggregateId: r.aggregate_id,
    eventType: r.event_type,
    tenantId: r.tenant_id,
    queue: r.queue,
    retryCount: r.retry_count,
    maxRetries: r.max_retries,
    createdAt: r.created_at,
    payload: r.payload,
    headers: r.headers,
    priority: r.priority,
    traceparent: r.traceparent,
    filepath: r.filepath,
    filesize: r.filesize,
  };
}
