import type { KeyRef } from './keys.js';

/** `in_progress`: claimed, the processor is running under a lease. `completed`: the result is stored. */
export type RecordStatus = 'in_progress' | 'completed';

/** One stored idempotency record, as every store returns it. */
export interface IdempotencyRecord extends KeyRef {
  readonly status: RecordStatus;
  /** The stored JSON result; `null` while in progress. */
  readonly result: unknown;
  /** The request fingerprint the key was claimed with, if any. */
  readonly fingerprint: string | null;
  readonly createdAt: Date;
  readonly expiresAt: Date;
  /** When an in-progress claim may be taken over; `null` once completed. */
  readonly leaseExpiresAt: Date | null;
}

export interface ClaimRequest {
  /** Random per claim, lower-case hex (the Redis record header expects hex); only its holder may renew, complete or release it. */
  readonly token: string;
  readonly leaseMs: number;
  readonly ttlMs: number;
  readonly fingerprint: string | null;
}

/**
 * What a claim found. `claimed`: the caller now holds the key. `completed`: an earlier run's result.
 * `in_progress`: another caller holds a live lease.
 */
export type ClaimOutcome =
  | { readonly kind: 'claimed' }
  | { readonly kind: 'completed'; readonly record: IdempotencyRecord }
  | { readonly kind: 'in_progress'; readonly record: IdempotencyRecord };

/** Counter increments for one queue+tenant, flushed in batches (see stats-buffer.ts). */
export interface StatsDelta {
  readonly queueName: string;
  readonly tenantId: string;
  readonly requests: number;
  readonly duplicates: number;
}

export interface StoredStats {
  readonly totalRequests: number;
  readonly duplicatesAvoided: number;
  readonly lastUpdated: Date | null;
}

/** Which store backs a service: the config's `storage.type`, with `database+redis` for the hot-cache composite. */
export type StoreKind = 'memory' | 'redis' | 'database' | 'database+redis';

/**
 * The one interface every store implements. All time comparisons happen in the store's own clock (Postgres `now()`,
 * Redis `TIME`, `Date.now()` for memory), so processes with skewed clocks agree on leases.
 */
export interface IdempotencyStore {
  readonly kind: StoreKind;
  /** Atomically claim the key, or report the live record that prevents it. Expired records count as absent. */
  claim(ref: KeyRef, request: ClaimRequest): Promise<ClaimOutcome>;
  /** Extend a held lease; `false` when the claim was lost (taken over or deleted). */
  renew(ref: KeyRef, token: string, leaseMs: number): Promise<boolean>;
  /** Store the result (already JSON-encoded, once, by the service) of a held claim; `false` when the claim was lost. */
  complete(ref: KeyRef, token: string, resultJson: string, ttlMs: number): Promise<boolean>;
  /** Drop a held claim so the next caller runs; `false` when it was not held. */
  release(ref: KeyRef, token: string): Promise<boolean>;
  get(ref: KeyRef): Promise<IdempotencyRecord | undefined>;
  /** Insert a completed record unless a live one exists (then `undefined`). */
  create(ref: KeyRef, valueJson: string, ttlMs: number): Promise<IdempotencyRecord | undefined>;
  delete(ref: KeyRef): Promise<boolean>;
  /** Remove expired records in batches of `batchSize`; returns how many were removed. */
  cleanup(batchSize: number): Promise<number>;
  /** Live records of a queue (all queues when omitted); of one tenant when `tenantId` is given. */
  countKeys(queueName?: string, tenantId?: string): Promise<number>;
  addStats(deltas: readonly StatsDelta[]): Promise<void>;
  /** Counters of one tenant, or summed over the queue's tenants when `tenantId` is undefined. */
  readStats(queueName: string, tenantId?: string): Promise<StoredStats>;
  close(): Promise<void>;
}
