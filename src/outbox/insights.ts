import { InvalidParameterError } from '../errors.js';
import type { OutboxStatus } from './types.js';

// Operator read models for the dashboard, whichever storage holds the outbox: what is waiting, what is stuck, what
// died and why. The Postgres outbox computes them in postgres/insights.ts, the Redis outbox in redis/insights.ts.

export interface OverviewBacklog {
  pending: number;
  /** Pending and due now: what the relays can claim. */
  due: number;
  /** Pending after at least one failed attempt (`retry_count > 0`), due or waiting for their backoff. */
  retrying: number;
  failed: number;
  oldestPendingAgeSeconds: number;
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

export function checkLimit(limit: number, max: number): void {
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new InvalidParameterError('limit', `must be an integer from 1 to ${max}`);
  }
}
