import type { SqlExecutor } from '../db/executor.js';
import { InvalidParameterError } from '../errors.js';
import { type DestinationRule, destinationSql, queryOutbox } from './inspect.js';
import { OUTBOX_TABLE } from './rows.js';
import type { OutboxStatus } from './types.js';

// Operator read models for the dashboard: what is waiting, what is stuck, what died and why. Each statement reads a
// small partial index (the backlog, the retrying events, the dead events), never the retained history, except the
// publish rate, which reads the last minutes of `published_at` through its BRIN index (migrations/0007), and the
// per-destination backlog, which groups the pending and failed rows.

export interface OverviewBacklog {
  pending: number;
  /** Pending and due now: what the relays can claim. */
  due: number;
  /** Pending after at least one failed attempt (`retry_count > 0`), due or waiting for their backoff. */
  retrying: number;
  failed: number;
  oldestPendingAgeSeconds: number;
}

/**
 * The backlog broken down as the relay sees it. Counts walk the `_pending`, `_retrying` and `_failed` partial
 * indexes: the size of the backlog, never of the retained history.
 *
 * @example const { pending, due, retrying, failed } = await overviewBacklog(pool);
 */
export async function overviewBacklog(db: SqlExecutor): Promise<OverviewBacklog> {
  const { rows } = await queryOutbox<{ pending: string; due: string; retrying: string; failed: string; age: number }>(
    db,
    `SELECT
       (SELECT count(*) FROM ${OUTBOX_TABLE} WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM ${OUTBOX_TABLE} WHERE status = 'pending' AND next_attempt_at <= now()) AS due,
       (SELECT count(*) FROM ${OUTBOX_TABLE} WHERE status = 'pending' AND retry_count > 0) AS retrying,
       (SELECT count(*) FROM ${OUTBOX_TABLE} WHERE status = 'failed') AS failed,
       extract(epoch FROM now() - (SELECT created_at FROM ${OUTBOX_TABLE} WHERE status = 'pending' ORDER BY seq LIMIT 1))::float8 AS age`,
  );
  const row = rows[0];
  return {
    pending: Number(row?.pending ?? 0),
    due: Number(row?.due ?? 0),
    retrying: Number(row?.retrying ?? 0),
    failed: Number(row?.failed ?? 0),
    oldestPendingAgeSeconds: Math.max(0, row?.age ?? 0),
  };
}

export interface DestinationCounts {
  queue: string;
  pending: number;
  failed: number;
  /** Published within the window asked for (`published_at`, every relay). */
  publishedRecent: number;
}

export interface PublishedBucket {
  /** Start of the bucket, ms since the epoch (a multiple of the bucket size). */
  at: number;
  published: number;
}

export interface OutboxTraffic {
  /** Oldest first; one per bucket from `since`, empty buckets included. */
  buckets: PublishedBucket[];
  /** Every destination with pending, failed or recently published events, busiest backlog first. */
  destinations: DestinationCounts[];
}

/**
 * Events published per bucket since `sinceMs` (every relay: read from `published_at`), and per destination the
 * pending and failed counts and what was published in that window. `sinceMs` is rounded down to the bucket grid.
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
  const dest = destinationSql(1, 2);
  const [published, backlog] = await Promise.all([
    queryOutbox<{ queue: string; bucket: string; n: string }>(
      db,
      `SELECT ${dest} AS queue, floor(extract(epoch FROM published_at) * 1000 / $4::float8)::bigint AS bucket,
              count(*) AS n
         FROM ${OUTBOX_TABLE}
        WHERE status = 'published' AND published_at >= to_timestamp($3::float8 / 1000)
        GROUP BY 1, 2`,
      [rule.queuePattern, rule.defaultPriority, tally.start, bucketMs],
    ),
    queryOutbox<{ queue: string; status: OutboxStatus; n: string }>(
      db,
      `SELECT ${dest} AS queue, status, count(*) AS n
         FROM ${OUTBOX_TABLE}
        WHERE status IN ('pending', 'failed')
        GROUP BY 1, 2`,
      [rule.queuePattern, rule.defaultPriority],
    ),
  ]);
  for (const r of published.rows) tally.published(r.queue, Number(r.bucket) * bucketMs, Number(r.n));
  for (const r of backlog.rows) tally.backlog(r.queue, r.status === 'pending' ? 'pending' : 'failed', Number(r.n));
  return tally.report();
}

/** Counts traffic as both outbox storages report it: published events per time bucket, and per destination. */
export class TrafficTally {
  /** Start of the first bucket: `sinceMs` rounded down to a whole bucket. */
  readonly start: number;
  readonly #bucketMs: number;
  readonly #buckets = new Map<number, number>();
  readonly #destinations = new Map<string, DestinationCounts>();

  constructor(sinceMs: number, bucketMs: number) {
    this.#bucketMs = bucketMs;
    this.start = Math.floor(sinceMs / bucketMs) * bucketMs;
  }

  /** `n` events published to `queue` at `atMs` (ms since the epoch). */
  published(queue: string, atMs: number, n = 1): void {
    const at = Math.floor(atMs / this.#bucketMs) * this.#bucketMs;
    this.#buckets.set(at, (this.#buckets.get(at) ?? 0) + n);
    this.#destination(queue).publishedRecent += n;
  }

  /** `n` events of `queue` waiting (`pending`) or dead (`failed`). */
  backlog(queue: string, status: 'pending' | 'failed', n = 1): void {
    this.#destination(queue)[status] += n;
  }

  /** Every bucket from `start` to the last one counted, empty ones included; destinations busiest backlog first. */
  report(): OutboxTraffic {
    const buckets: PublishedBucket[] = [];
    const last = Math.max(this.start, ...this.#buckets.keys());
    for (let at = this.start; at <= last; at += this.#bucketMs) {
      buckets.push({ at, published: this.#buckets.get(at) ?? 0 });
    }
    const destinations = [...this.#destinations.values()].sort(
      (a, b) => b.pending + b.failed - (a.pending + a.failed) || b.publishedRecent - a.publishedRecent,
    );
    return { buckets, destinations };
  }

  #destination(queue: string): DestinationCounts {
    let e = this.#destinations.get(queue);
    if (!e) {
      e = { queue, pending: 0, failed: 0, publishedRecent: 0 };
      this.#destinations.set(queue, e);
    }
    return e;
  }
}

export interface HeldAggregate {
  aggregateType: string;
  aggregateId: string;
  /** Pending events of the aggregate after the blocking one: the relay does not claim them until it is published. */
  waiting: number;
  blocking: {
    id: string;
    seq: string;
    status: OutboxStatus;
    eventType: string;
    retryCount: number;
    lastError: string | null;
    nextAttemptAt: Date;
  };
}

export const HELD_DEFAULT_LIMIT = 50;
export const HELD_MAX_LIMIT = 500;

/**
 * Aggregates whose later events wait behind a retrying event, oldest blocker first. The rule is the relay's own
 * (src/outbox/relay-sql.ts): an event of the aggregate that is pending with `retry_count > 0` and not due yet holds
 * back every later pending event of the aggregate. A `failed` (dead) event holds nothing: once it dies its aggregate
 * flows again, so it is listed by `failedGroups`, not here.
 *
 * Shape: the blockers come from the small `_retrying` index (migrations/0003) in (aggregate, seq) order, so DISTINCT
 * ON picks each aggregate's first one without a sort; the waiting count probes `_pending_aggregate`.
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
    status: OutboxStatus;
    event_type: string;
    retry_count: number;
    last_error: string | null;
    next_attempt_at: Date;
  }>(
    db,
    `SELECT b.*, w.waiting
       FROM (SELECT DISTINCT ON (aggregate_type, aggregate_id)
                    aggregate_type, aggregate_id, id, seq, status, event_type, retry_count, last_error, next_attempt_at
               FROM ${OUTBOX_TABLE}
              WHERE status = 'pending' AND retry_count > 0 AND next_attempt_at > now()
              ORDER BY aggregate_type, aggregate_id, seq) b
       CROSS JOIN LATERAL (
         SELECT count(*) AS waiting FROM ${OUTBOX_TABLE} o
          WHERE o.status = 'pending' AND o.aggregate_type = b.aggregate_type AND o.aggregate_id = b.aggregate_id
            AND o.seq > b.seq) w
      WHERE w.waiting > 0
      ORDER BY b.seq
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
      status: r.status,
      eventType: r.event_type,
      retryCount: r.retry_count,
      lastError: r.last_error,
      nextAttemptAt: r.next_attempt_at,
    },
  }));
}

export interface FailedGroup {
  /** The events' exact `last_error` (`null`: failed without one); replay the group with `retryOutboxEvents({ error })`. */
  error: string | null;
  count: number;
  /** `created_at` of the group's oldest and newest event (the outbox keeps no failure time). */
  firstAt: Date;
  lastAt: Date;
  /** Up to five ids of the group, oldest first. */
  sampleIds: string[];
}

export const GROUPS_DEFAULT_LIMIT = 50;
export const GROUPS_MAX_LIMIT = 500;

/**
 * Dead events grouped by their exact last error, largest group first. Reads the `_failed` partial index: the size of
 * the dead-letter set, not of the table.
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
       FROM ${OUTBOX_TABLE}
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

function checkLimit(limit: number, max: number): void {
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new InvalidParameterError('limit', `must be an integer from 1 to ${max}`);
  }
}
