import type pg from 'pg';
import type { Config } from '../config/load-config.js';
import type { Logger } from '../logger.js';
import type { RedisClient } from '../redis.js';
import type { IdempotencyKey } from './keys.js';
import type { IdempotencyMetrics } from './metrics.js';

export interface IdempotencyServiceOptions {
  /** The whole resolved config; the service reads `idempotency`, `database.url` and `redis.url`. */
  config: Config;
  /** Postgres pool for the `database` store; opened from `database.url` when absent (and then closed by `close()`). */
  pool?: pg.Pool;
  /** Redis client (or cluster client) for the `redis` store and the hot cache; opened from `redis` config when absent. */
  redis?: RedisClient;
  /** @defaultValue a silent logger */
  logger?: Logger;
  metrics?: IdempotencyMetrics;
}

/** What `processWithIdempotency` hands its processor. */
export interface ProcessorContext {
  /**
   * Fires when this call's claim on the key is lost: the lease ran out before it could be renewed (the event loop was
   * blocked, or the store unreachable, for longer than `idempotency.lease`), or a renewal found the key taken over or
   * deleted. Its `reason` is an `IdempotencyLeaseLostError`. From then on another caller may run the same key: check
   * `signal.aborted` (or `signal.throwIfAborted()`) before an effect, or pass the signal to `fetch` and friends.
   * A timer fires it, so a processor that blocks the event loop sees it at its next `await`.
   */
  readonly signal: AbortSignal;
  readonly key: IdempotencyKey;
}

/** The processor of `processWithIdempotency`; processors that take no argument are fine too. */
export type Processor<T> = (context: ProcessorContext) => Promise<T> | T;

export interface ProcessOptions {
  /**
   * A hash of the request payload. A key first used with another fingerprint is refused with
   * `IdempotencyKeyMismatchError` (the processor does not run). @defaultValue none (not checked)
   */
  fingerprint?: string;
  /** How long a duplicate waits for a running first call. @defaultValue `idempotency.wait_timeout` */
  waitTimeoutMs?: number;
}

/**
 * What happened. `duplicate: false`: this call ran the processor and `result` is its return value. `duplicate: true`:
 * an earlier call did, and `result` is its stored result as JSON gives it back (Dates become strings; `undefined`
 * becomes `null`).
 */
export type ProcessResult<T> =
  | { readonly duplicate: false; readonly result: T }
  | { readonly duplicate: true; readonly result: T };

/** The reference document's (docs/reference-api.md) DedupStats. */
export interface DedupStats {
  queueName: string;
  /** The tenant asked for; `null` when the numbers cover every tenant of the queue (tenant-less keys included). */
  tenantId: string | null;
  /** Live (unexpired) keys stored. */
  totalKeys: number;
  /** `duplicatesAvoided / totalRequests`: the share of calls answered from a stored result (0 when no calls yet). */
  hitRate: number;
  /** `processWithIdempotency` / `processInTransaction` calls, counted by every process. */
  totalRequests: number;
  duplicatesAvoided: number;
  /** When any process last added to these counters; `null` if none has. */
  lastUpdated: Date | null;
}

export interface CreateRecordInput {
  queueName: string;
  /** @defaultValue '' */
  tenantId?: string;
  keyId: string;
  /** Stored as the completed result (JSON). */
  value: unknown;
  /** @defaultValue `idempotency.default_ttl` */
  ttlMs?: number;
}
