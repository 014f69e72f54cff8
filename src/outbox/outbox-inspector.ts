import type { Config } from '../config/load-config.js';
import type { FailedGroup, HeldAggregate, OutboxTraffic, OverviewBacklog } from './insights.js';
import type {
  DestinationRule,
  ListOutboxOptions,
  OutboxBacklog,
  OutboxPage,
  RetryResult,
  RetrySelection,
} from './inspect.js';
import type { RedisOutboxMemory } from './redis/insights.js';
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
   * Published per bucket since `sinceMs`, and counts per destination. `capped`: some are lower bounds (the Redis
   * outbox walks a cap; the Postgres one caps each lane's backlog count); `cappedBy` says which walks stopped there.
   */
  traffic(rule: DestinationRule, sinceMs: number, bucketMs: number): Promise<OutboxTraffic & TrafficCaps>;
  /** Aggregates whose later events wait behind a retrying event. */
  held(limit: number): Promise<HeldAggregate[]>;
  /** Dead events grouped by exact last error. */
  failedGroups(limit: number): Promise<FailedGroup[]>;
  /** Drop published and failed events older than `olderThanMs` (`outbox.cleanup_after`). */
  cleanup(olderThanMs: number): Promise<{ deleted: number; batches: number }>;
  /** Redis only: relay processes running now (their doorbell subscriptions). Postgres counts LISTEN connections. */
  relaysAwake?(): Promise<number>;
  /** Redis only: what the outbox keys cost in memory. Postgres has table sizes (`/tables`). */
  memory?(): Promise<RedisOutboxMemory>;
  /** Redis only: published and failed events old enough for cleanup, counted up to a cap. */
  cleanupDue?(olderThanMs: number): Promise<{ due: number; capped: boolean }>;
}
