import { OUTBOX_TABLE } from './rows.js';

/*
 * The relay's hot-path statements. A batch is one transaction on one connection:
 *
 *   BEGIN; SET LOCAL idle_in_transaction_session_timeout   -- a wedged relay's claim is released (G5)
 *   LOCK_AGGREGATES      -- pick aggregates and take their transaction-scoped advisory locks
 *   CLAIM                -- fresh snapshot: read those aggregates' due events, FOR UPDATE SKIP LOCKED
 *   ... publish to Redis in one round trip ...
 *   MARK                 -- published / retry with backoff / failed
 *   COMMIT               -- releases row locks and advisory locks together
 *
 * Why two statements to claim: row locks alone cannot keep an aggregate's order with N relays. Relay A may lock
 * events 1..50 of aggregate X while relay B skips them and takes 51..60, publishing 51 before 1. An advisory lock per
 * aggregate gives one relay the whole aggregate for the transaction. The events are read by a *second* statement
 * because its snapshot starts after the lock was granted, so it sees everything the previous holder committed
 * (with one statement, a snapshot taken just before the previous holder's COMMIT could still show its events as
 * pending, and a retry it scheduled as due).
 */

/** Advisory-lock namespace of outbox aggregates (first key of the two-int lock). */
const LOCK_SPACE = `hashtext('${OUTBOX_TABLE}')`;

/**
 * $1 claim window, $2 batch size. Looks at the oldest `$1` due events in write order (partial index on pending seq),
 * skips aggregates whose head event is waiting for a retry (one index probe each), and tries the aggregate's advisory
 * lock. The CASE makes Postgres try the lock only after the head check passed; the LIMIT on the CTE scan (no ORDER BY
 * here, the CTE already yields seq order) stops after `$2` rows, so we lock no more aggregates than we will use.
 * Reentrant: later rows of an aggregate we already hold pass again. Returns one row per candidate event.
 */
export const LOCK_AGGREGATES_SQL = `
  WITH cand AS MATERIALIZED (
    SELECT seq, aggregate_type, aggregate_id
    FROM ${OUTBOX_TABLE}
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY seq
    LIMIT $1
  )
  SELECT c.aggregate_type, c.aggregate_id
  FROM cand c
  WHERE CASE
    WHEN (SELECT h.next_attempt_at <= now()
          FROM ${OUTBOX_TABLE} h
          WHERE h.status = 'pending' AND h.aggregate_type = c.aggregate_type AND h.aggregate_id = c.aggregate_id
          ORDER BY h.seq
          LIMIT 1)
    THEN pg_try_advisory_xact_lock(${LOCK_SPACE}, hashtext(c.aggregate_type || '/' || c.aggregate_id))
    ELSE false
  END
  LIMIT $2`;

/**
 * $1 aggregate types, $2 aggregate ids (the ones we locked), $3 batch size. For each aggregate, its first `$3`
 * pending events in order (LATERAL + the pending-aggregate index, so a hot aggregate with a million-event backlog
 * costs `$3` rows, not a million), cut at the first event that is not due yet: events after a failing one wait for it.
 * Then the oldest `$3` of those across aggregates, locked. JSON comes back as text for the job builder; filepath and
 * filesize are extracted here so Node never parses payloads.
 */
export const CLAIM_SQL = `
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
      FROM unnest($1::text[], $2::text[]) AS a(t, i)
      CROSS JOIN LATERAL (
        SELECT seq, next_attempt_at
        FROM ${OUTBOX_TABLE}
        WHERE status = 'pending' AND aggregate_type = a.t AND aggregate_id = a.i
        ORDER BY seq
        LIMIT $3
      ) p
    ) x
    WHERE due_prefix
    ORDER BY seq
    LIMIT $3
  )
  AND o.status = 'pending'
  ORDER BY o.seq
  FOR UPDATE SKIP LOCKED`;

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
