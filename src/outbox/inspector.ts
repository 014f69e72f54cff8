import type pg from 'pg';
import type { Config } from '../config/load-config.js';
import type { SqlExecutor } from '../db/executor.js';
import type { RedisClient } from '../redis.js';
import { cleanupOutbox } from './cleanup.js';
import {
  type FailedGroup,
  failedGroups,
  type HeldAggregate,
  heldAggregates,
  type OutboxTraffic,
  type OverviewBacklog,
  outboxTraffic,
  overviewBacklog,
} from './insights.js';
import {
  type DestinationRule,
  getOutboxEvent,
  type ListOutboxOptions,
  listOutboxEvents,
  type OutboxBacklog,
  type OutboxPage,
  outboxBacklog,
  type RetryResult,
  type RetrySelection,
  retryOutboxEvents,
} from './inspect.js';
import type { RedisOutboxMemory } from './redis/insights.js';
import { RedisOutboxInspector } from './redis/inspector.js';
import type { OutboxEvent } from './types.js';

/** Whether a traffic report's figures are complete (`false`) or lower bounds, overall and per status walked. */
export interface TrafficCaps {
  capped: boolean;
  cappedBy?: { published: boolean; pending: boolean; failed: boolean };
}

/**
 * What operators see of an outbox and do to it, whichever storage holds it: the admin API and dashboard, the CLI
 * (`outbox list`, `outbox retry`, `stats`) and the backlog gauges go through this.
 */
export interface OutboxInspector {
  readonly storage: Config['outbox']['storageType'];
  /** One page in write order; throws `InvalidParameterError` naming a bad or unsupported option. */
  list(options?: ListOutboxOptions): Promise<OutboxPage>;
  backlog(): Promise<OutboxBacklog>;
  /** Replay failed events (`failed` -> `pending`, retry count 0, due now); other states are left alone. */
  retry(selection: RetrySelection): Promise<RetryResult>;
  /** One event; `undefined` when unknown, `InvalidParameterError` (field `id`) when `id` is not a UUID. */
  get(id: string): Promise<OutboxEvent | undefined>;
  /** The backlog as the relays see it (the dashboard's overview). */
  overviewBacklog(): Promise<OverviewBacklog>;
  /**
   * Published per bucket since `sinceMs`, and counts per destination. `capped`: some are lower bounds (Redis walks a
   * cap); `cappedBy` says which walks stopped there, so which figures are lower bounds.
   */
  traffic(rule: DestinationRule, sinceMs: number, bucketMs: number): Promise<OutboxTraffic & TrafficCaps>;
  /** Aggregates whose later events wait behind a retrying event. */
  held(limit: number): Promise<HeldAggregate[]>;
  /** Dead events grouped by exact last error. */
  failedGroups(limit: number): Promise<FailedGroup[]>;
  /** Delete published and failed events older than `olderThanMs` (`outbox.cleanup_after`). */
  cleanup(olderThanMs: number): Promise<{ deleted: number; batches: number }>;
  /** Redis only: relay processes running now (their doorbell subscriptions). Postgres counts LISTEN connections. */
  relaysAwake?(): Promise<number>;
  /** Redis only: what the outbox keys cost in memory. Postgres has table sizes (`/tables`). */
  memory?(): Promise<RedisOutboxMemory>;
  /** Redis only: published and failed events old enough for cleanup, counted up to a cap. */
  cleanupDue?(olderThanMs: number): Promise<{ due: number; capped: boolean }>;
}

/**
 * The Postgres outbox's inspector: the functions of inspect.ts and insights.ts, options passed through unchanged.
 * Reads go to `read` (the admin API's own small pool in a relay), replays and cleanup to `write`.
 */
export function postgresOutboxInspector(pools: { read: SqlExecutor; write?: SqlExecutor }): OutboxInspector {
  const write = pools.write ?? pools.read;
  return {
    storage: 'database',
    list: (options) => listOutboxEvents(pools.read, options),
    backlog: () => outboxBacklog(pools.read),
    retry: (selection) => retryOutboxEvents(write, selection),
    get: (id) => getOutboxEvent(pools.read, id),
    overviewBacklog: () => overviewBacklog(pools.read),
    traffic: async (rule, sinceMs, bucketMs) => ({
      ...(await outboxTraffic(pools.read, rule, sinceMs, bucketMs)),
      capped: false,
    }),
    held: (limit) => heldAggregates(pools.read, limit),
    failedGroups: (limit) => failedGroups(pools.read, limit),
    cleanup: (olderThanMs) => cleanupOutbox(write, { olderThanMs }),
  };
}

/**
 * The inspector `outbox.storage_type` names. `redis` is read lazily: a Postgres-only command never needs it.
 *
 * @example const inspector = createOutboxInspector(config, { pool, redis: () => redis });
 */
export function createOutboxInspector(
  config: Config,
  deps: { pool: () => SqlExecutor | pg.Pool; readPool?: SqlExecutor; redis: () => RedisClient },
): OutboxInspector {
  if (config.outbox.storageType === 'redis') return new RedisOutboxInspector(deps.redis(), config.outbox);
  const pool = deps.pool();
  return postgresOutboxInspector({ read: deps.readPool ?? pool, write: pool });
}
