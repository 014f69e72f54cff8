import { OUTBOX_TABLE } from './rows.js';

/*
 * The relay's hot-path statements. A batch is one transaction on one connection, in three round trips:
 *
 *   1. claimBatchSql(), one simple-protocol message:
 *        BEGIN; SET LOCAL idle_in_transaction_session_timeout   -- a wedged relay's claim is released (G5)
 *        SET LOCAL jit = off
 *        LOCK_AGGREGATES   -- pick aggregates, take their transaction-scoped advisory locks, note the seqs of
 *                             their events it saw in a transaction-local setting
 *        CLAIM             -- fresh snapshot: read those events again if still pending and due, FOR UPDATE SKIP LOCKED
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
 * sending both in one message keeps that property and saves two round trips; the lock statement hands the seqs it picked
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
 * Reentrant: later rows of an aggregate we already hold pass again. Keeps an aggregate only if its *first* row in
 * the window passed: another relay may commit and release an aggregate while this scan is past that aggregate's first
 * rows, and the rows after them must not be claimed before those (this is what `whole` is for; the 8-relay ordering
 * test caught it). Stores the seqs of the rows kept, as a bigint array literal, in the transaction-local setting CLAIM
 * reads.
 */
function lockAggregatesSql(window: number, batch: number): string {
  return `
  WITH cand AS MATERIALIZED (
    SELECT seq, aggregate_type, aggregate_id
    FROM ${OUTBOX_TABLE}
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY seq
    LIMIT ${window}
  ), locked AS MATERIALIZED (
    SELECT c.seq, c.aggregate_type, c.aggregate_id
    FROM cand c
    WHERE CASE
      WHEN ${RETRY_BEFORE('c')}
      THEN false
      ELSE pg_try_advisory_xact_lock(${LOCK_SPACE}, hashtext(c.aggregate_type || '/' || c.aggregate_id))
    END
    LIMIT ${batch}
  ), whole AS (
    SELECT f.aggregate_type, f.aggregate_id
    FROM (SELECT aggregate_type, aggregate_id, min(seq) AS first FROM cand GROUP BY 1, 2) f
    JOIN locked l ON l.seq = f.first
  )
  SELECT set_config('${CLAIM_SETTING}', COALESCE(array_agg(l.seq)::text, '{}'), true)
  FROM locked l JOIN whole w USING (aggregate_type, aggregate_id)`;
}

/** Is an earlier event of `row`'s aggregate waiting for a retry (pending, not due)? A probe into `_retrying`. */
const RETRY_BEFORE = (row: string) => `EXISTS (SELECT 1
                   FROM ${OUTBOX_TABLE} h
                   WHERE h.status = 'pending' AND h.retry_count > 0 AND h.aggregate_type = ${row}.aggregate_type
                     AND h.aggregate_id = ${row}.aggregate_id AND h.seq < ${row}.seq AND h.next_attempt_at > now())`;

/**
 * The rows LOCK_AGGREGATES picked, read again in a fresh snapshot (taken after our advisory locks were granted, so it
 * sees everything the previous holder of those aggregates committed): still pending and due, and with no earlier event
 * of their aggregate that the previous holder scheduled for a retry meanwhile (the lock scan's snapshot could not see
 * that retry; `held` events after it stay pending and due, and are next in order). Rows the previous holder published
 * are no longer pending and drop out. JSON comes back as text for the job builder; filepath and filesize are extracted
 * here so Node never parses payloads.
 *
 * Measured (issue 10, 20,000 events over 1,000 aggregates, batch 500, 2 loaded cores, medians of 40 interleaved
 * claims): re-reading each locked aggregate's first events through LATERAL (the aggregates handed over as JSON, a
 * window function for the due prefix, an IN join back to the table) took 34 ms with the lock scan; the seq list takes
 * 15 ms (the naive relay's plain `LIMIT 500 FOR UPDATE SKIP LOCKED`: 7 ms). One aggregate: 15 -> 13 ms.
 */
function claimSql(): string {
  return `
  SELECT o.seq, o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.tenant_id, o.queue, o.retry_count,
         o.max_retries, o.created_at, o.payload::text AS payload, o.headers::text AS headers,
         o.headers->>'priority' AS priority, o.headers->>'traceparent' AS traceparent,
         CASE WHEN jsonb_typeof(o.payload->'filepath') = 'string' THEN o.payload->>'filepath' END AS filepath,
         CASE WHEN jsonb_typeof(o.payload->'filesize') = 'number' THEN o.payload->>'filesize' END AS filesize
  FROM ${OUTBOX_TABLE} o
  WHERE o.seq = ANY(current_setting('${CLAIM_SETTING}')::bigint[])
    AND o.status = 'pending' AND o.next_attempt_at <= now()
    AND NOT ${RETRY_BEFORE('o')}
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
    claimSql(),
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
