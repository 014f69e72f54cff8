import type { SqlExecutor } from '../../db/executor.js';
import {
  checkLimit,
  type FailedGroup,
  GROUPS_DEFAULT_LIMIT,
  GROUPS_MAX_LIMIT,
  HELD_DEFAULT_LIMIT,
  HELD_MAX_LIMIT,
  type HeldAggregate,
  type OutboxTraffic,
  type OverviewBacklog,
  TrafficTally,
} from '../insights.js';
import type { DestinationRule } from '../inspect.js';
import type { OutboxStatus } from '../types.js';
import { BACKLOG_COUNT_CAP } from './inspect.js';
import { CURSOR_CTE, destinationSql, LANES, queryOutbox, unhandledSql } from './queries.js';
import { PARKED_TABLE, TRAFFIC_TABLE } from './tables.js';

// The dashboard's read models on the write-once outbox: each lane's unhandled tail (the backlog, never the retained
// history), the small parked table, and the per-minute traffic rows relays write.

/** Each lane's unhandled events, `cols` of `e`, at most BACKLOG_COUNT_CAP of them per lane. */
function backlogSql(cols: string): string {
  return Array.from(
    { length: LANES },
    (_, lane) => `(SELECT * FROM (${unhandledSql(lane, cols)}) x LIMIT ${BACKLOG_COUNT_CAP})`,
  ).join('\nUNION ALL\n');
}

/**
 * The backlog broken down as the relay sees it: `due` are the unhandled events (always due) and the parked events
 * whose aggregate's head is due; `retrying` the parked events after at least one failed attempt.
 *
 * @example const { pending, due, retrying, failed } = await overviewBacklog(pool);
 */
export async function overviewBacklog(db: SqlExecutor): Promise<OverviewBacklog> {
  const { rows } = await queryOutbox<{
    unhandled: string;
    oldest: Date | null;
    pending: string;
    due: string;
    retrying: string;
    failed: string;
    parked_oldest: Date | null;
    now: Date;
  }>(
    db,
    `WITH ${CURSOR_CTE}, tail AS (${backlogSql('e.created_at')}),
          heads AS (SELECT DISTINCT ON (lane, aggregate_type, aggregate_id) lane, aggregate_type, aggregate_id,
                           next_attempt_at
                      FROM ${PARKED_TABLE} WHERE status = 'pending'
                     ORDER BY lane, aggregate_type, aggregate_id, ord)
     SELECT (SELECT count(*) FROM tail) AS unhandled, (SELECT min(created_at) FROM tail) AS oldest,
            count(*) FILTER (WHERE p.status = 'pending') AS pending,
            count(*) FILTER (WHERE p.status = 'pending' AND h.next_attempt_at <= now()) AS due,
            count(*) FILTER (WHERE p.status = 'pending' AND p.retry_count > 0) AS retrying,
            count(*) FILTER (WHERE p.status = 'failed') AS failed,
            min(p.created_at) FILTER (WHERE p.status = 'pending') AS parked_oldest,
            now() AS now
       FROM ${PARKED_TABLE} p
       LEFT JOIN heads h ON h.lane = p.lane AND h.aggregate_type = p.aggregate_type AND h.aggregate_id = p.aggregate_id`,
  );
  const r = rows[0];
  if (!r) return { pending: 0, due: 0, retrying: 0, failed: 0, oldestPendingAgeSeconds: 0 };
  const unhandled = Number(r.unhandled);
  const oldest = [r.oldest, r.parked_oldest].filter((d): d is Date => d !== null).map((d) => d.getTime());
  return {
    pending: unhandled + Number(r.pending),
    due: unhandled + Number(r.due),
    retrying: Number(r.retrying),
    failed: Number(r.failed),
    oldestPendingAgeSeconds: oldest.length === 0 ? 0 : Math.max(0, (r.now.getTime() - Math.min(...oldest)) / 1000),
  };
}

/**
 * Events written per bucket since `sinceMs`, from every relay (the per-minute rows each relay writes), and per
 * destination the pending and failed counts and what was written in that window. `sinceMs` is rounded down to the
 * bucket grid.
 *
 * @example const { buckets, destinations } = await outboxTraffic(pool, rule, Date.now() - 15 * 60_000, 60_000);
 */
export async function outboxTraffic(
  db: SqlExecutor,
  rule: DestinationRule,
  sinceMs: number,
  bucketMs: number,
): Promise<OutboxTraffic> {
  const tally = new TrafficTally(sinceMs, bucketMs);
  const [published, backlog] = await Promise.all([
    queryOutbox<{ queue: string; bucket: string; n: string }>(
      db,
      `SELECT queue, floor(extract(epoch FROM minute) * 1000 / $2::float8)::bigint AS bucket, sum(published) AS n
         FROM ${TRAFFIC_TABLE}
        WHERE minute >= to_timestamp($1::float8 / 1000)
        GROUP BY 1, 2`,
      [tally.start, bucketMs],
    ),
    queryOutbox<{ queue: string; status: OutboxStatus; n: string }>(
      db,
      `WITH ${CURSOR_CTE}, tail AS (${backlogSql('e.queue, e.headers')})
       SELECT ${destinationSql(1, 2)} AS queue, 'pending' AS status, count(*) AS n FROM tail GROUP BY 1
       UNION ALL
       SELECT ${destinationSql(1, 2)} AS queue, status, count(*) AS n FROM ${PARKED_TABLE} GROUP BY 1, 2`,
      [rule.queuePattern, rule.defaultPriority],
    ),
  ]);
  for (const r of published.rows) tally.published(r.queue, Number(r.bucket) * bucketMs, Number(r.n));
  for (const r of backlog.rows) tally.backlog(r.queue, r.status === 'pending' ? 'pending' : 'failed', Number(r.n));
  return tally.report();
}

/**
 * Aggregates whose later events wait behind a retrying event, oldest blocker first: the parked queues whose head is
 * waiting for its retry. A `failed` (dead) event holds nothing: once it dies its aggregate flows again, so it is listed
 * by `failedGroups`, not here.
 *
 * @example const held = await heldAggregates(pool, 20);
 */
export async function heldAggregates(db: SqlExecutor, limit = HELD_DEFAULT_LIMIT): Promise<HeldAggregate[]> {
  checkLimit(limit, HELD_MAX_LIMIT);
  const { rows } = await queryOutbox<{
    aggregate_type: string;
    aggregate_id: string;
    waiting: string;
    id: string;
    seq: string;
    event_type: string;
    retry_count: number;
    last_error: string | null;
    next_attempt_at: Date;
  }>(
    db,
    `SELECT h.*, w.waiting
       FROM (SELECT DISTINCT ON (lane, aggregate_type, aggregate_id)
                    lane, aggregate_type, aggregate_id, id, seq, ord, event_type, retry_count, last_error, next_attempt_at
               FROM ${PARKED_TABLE}
              WHERE status = 'pending'
              ORDER BY lane, aggregate_type, aggregate_id, ord) h
      CROSS JOIN LATERAL (
        SELECT count(*) AS waiting FROM ${PARKED_TABLE} w
         WHERE w.status = 'pending' AND w.lane = h.lane AND w.aggregate_type = h.aggregate_type
           AND w.aggregate_id = h.aggregate_id AND w.ord > h.ord) w
      WHERE h.retry_count > 0 AND h.next_attempt_at > now() AND w.waiting > 0
      ORDER BY h.seq
      LIMIT $1`,
    [limit],
  );
  return rows.map((r) => ({
    aggregateType: r.aggregate_type,
    aggregateId: r.aggregate_id,
    waiting: Number(r.waiting),
    blocking: {
      id: r.id,
      seq: String(r.seq),
      status: 'pending',
      eventType: r.event_type,
      retryCount: r.retry_count,
      lastError: r.last_error,
      nextAttemptAt: r.next_attempt_at,
    },
  }));
}

/**
 * Dead events grouped by their exact last error, largest group first: the parked table's failed rows, the size of
 * the dead-letter set.
 *
 * @example const groups = await failedGroups(pool); await retryOutboxEvents(pool, { error: groups[0].error });
 */
export async function failedGroups(db: SqlExecutor, limit = GROUPS_DEFAULT_LIMIT): Promise<FailedGroup[]> {
  checkLimit(limit, GROUPS_MAX_LIMIT);
  const { rows } = await queryOutbox<{
    error: string | null;
    n: string;
    first_at: Date;
    last_at: Date;
    sample_ids: string[];
  }>(
    db,
    `SELECT last_error AS error, count(*) AS n, min(created_at) AS first_at, max(created_at) AS last_at,
            (array_agg(id::text ORDER BY seq))[1:5] AS sample_ids
       FROM ${PARKED_TABLE}
      WHERE status = 'failed'
      GROUP BY last_error
      ORDER BY count(*) DESC, min(seq)
      LIMIT $1`,
    [limit],
  );
  return rows.map((r) => ({
    error: r.error,
    count: Number(r.n),
    firstAt: r.first_at,
    lastAt: r.last_at,
    sampleIds: r.sample_ids,
  }));
}
