import type { Logger } from '../logger.js';
import type { RedisClient } from '../redis.js';
import { withTimeout } from '../timeout.js';
import type { DatabaseStore } from './database-store.js';
import type { KeyRef } from './keys.js';
import { decodeRecord, encodePayload, fingerprintHex, redisPart, requirePatternParts } from './redis-codec.js';
import type {
  ClaimOutcome,
  ClaimRequest,
  IdempotencyRecord,
  IdempotencyStore,
  StatsDelta,
  StoredStats,
} from './types.js';

export interface HotCacheOptions {
  keyPrefix: string;
  /** Same layout as the redis store's `key_pattern`, under `<prefix>cache:`. */
  keyPattern: string;
  compression: boolean;
  /** A cache read slower than this counts as a miss (Postgres answers instead). */
  timeoutMs: number;
  logger: Logger;
  /** Called for every failed cache operation (the service counts it as a storage error). */
  onError(queueName: string, operation: string, err: unknown): void;
}

/** Cache reads give up after this long; a healthy local Redis answers in well under a millisecond. */
export const HOT_CACHE_TIMEOUT_MS = 100;

/**
 * Postgres is the truth; Redis remembers completed keys so that duplicate checks skip the database. Only completed
 * records are cached (an in-progress claim must be decided by Postgres), each with the key's remaining TTL. Any cache
 * failure (miss, eviction, error, timeout, Redis down) falls through to Postgres, never to "first time", and never
 * fails the caller.
 */
export class HotCacheStore implements IdempotencyStore {
  readonly kind = 'database+redis' as const;
  private lastWarning = 0;

  constructor(
    readonly db: DatabaseStore,
    private readonly redis: RedisClient,
    private readonly options: HotCacheOptions,
  ) {
    requirePatternParts(
      options.keyPattern,
      ['queue', 'tenant', 'key'],
      'exactly_once.idempotency.storage.redis.key_pattern',
    );
  }

  async claim(ref: KeyRef, request: ClaimRequest): Promise<ClaimOutcome> {
    const cached = await this.lookup(ref);
    if (cached) return { kind: 'completed', record: cached };
    const outcome = await this.db.claim(ref, request);
    if (outcome.kind === 'completed') await this.remember(outcome.record);
    return outcome;
  }

  /** Postgres moves the row's expiry along with its lease (G4); nothing of an in-progress claim lives in the cache. */
  renew(ref: KeyRef, token: string, leaseMs: number): Promise<boolean> {
    return this.db.renew(ref, token, leaseMs);
  }

  async complete(ref: KeyRef, token: string, resultJson: string, ttlMs: number): Promise<boolean> {
    const sentAt = Date.now();
    const done = await this.db.completeClaim(ref, token, resultJson, ttlMs);
    // Postgres started the TTL somewhere after `sentAt`: the cached copy ends no later than the row, or a cache hit
    // would answer "duplicate" for a key that already expired.
    if (done) await this.rememberJson(ref, resultJson, ttlMs - (Date.now() - sentAt), done.fingerprint);
    return done !== undefined;
  }

  release(ref: KeyRef, token: string): Promise<boolean> {
    return this.db.release(ref, token);
  }

  /** Admin reads go to the truth, so they also show in-progress claims. */
  get(ref: KeyRef): Promise<IdempotencyRecord | undefined> {
    return this.db.get(ref);
  }

  create(ref: KeyRef, valueJson: string, ttlMs: number): Promise<IdempotencyRecord | undefined> {
    return this.db.create(ref, valueJson, ttlMs);
  }

  /** Deletes from Postgres, then drops the cached copy (if Redis is down the copy lives until its TTL). */
  async delete(ref: KeyRef): Promise<boolean> {
    const deleted = await this.db.delete(ref);
    await this.guard(ref.queueName, 'cache_delete', () => this.redis.del(this.key(ref)));
    return deleted;
  }

  /** Cached copies carry their own TTL, so only the table needs sweeping. */
  cleanup(batchSize: number): Promise<number> {
    return this.db.cleanup(batchSize);
  }

  countKeys(queueName?: string, tenantId?: string): Promise<number> {
    return this.db.countKeys(queueName, tenantId);
  }

  addStats(deltas: readonly StatsDelta[]): Promise<void> {
    return this.db.addStats(deltas);
  }

  readStats(queueName: string, tenantId?: string): Promise<StoredStats> {
    return this.db.readStats(queueName, tenantId);
  }

  close(): Promise<void> {
    return this.db.close();
  }

  /** The cached completed record, or `undefined` on a miss or any cache failure. */
  async lookup(ref: KeyRef): Promise<IdempotencyRecord | undefined> {
    const raw = await this.guard(ref.queueName, 'cache_get', () => this.redis.getBuffer(this.key(ref)));
    if (!raw) return undefined;
    try {
      const record = decodeRecord(ref, raw);
      return record && record.status === 'completed' && record.expiresAt.getTime() > Date.now() ? record : undefined;
    } catch (err) {
      this.options.onError(ref.queueName, 'cache_decode', err);
      return undefined;
    }
  }

  /** Cache a completed record for the rest of its life. */
  async remember(record: IdempotencyRecord): Promise<void> {
    const remaining = record.expiresAt.getTime() - Date.now();
    if (record.status !== 'completed' || remaining <= 0) return;
    await this.rememberJson(record, JSON.stringify(record.result), remaining, record.fingerprint, record.createdAt);
  }

  async rememberJson(
    ref: KeyRef,
    resultJson: string,
    ttlMs: number,
    fingerprint: string | null,
    createdAt = new Date(),
  ): Promise<void> {
    if (ttlMs <= 0) return;
    const { encoding, payload } = encodePayload(resultJson, this.options.compression);
    const expires = Date.now() + ttlMs;
    const header = `eo1|c|${encoding}|0|${expires}|${createdAt.getTime()}||${fingerprintHex(fingerprint)}|`;
    const value = Buffer.concat([Buffer.from(header, 'latin1'), payload]);
    await this.guard(ref.queueName, 'cache_set', () => this.redis.set(this.key(ref), value, 'PX', Math.ceil(ttlMs)));
  }

  private key(ref: KeyRef): string {
    return `${this.options.keyPrefix}cache:${this.options.keyPattern.replace(/\{(queue|tenant|key)\}/g, (_, part) =>
      redisPart(part === 'queue' ? ref.queueName : part === 'tenant' ? ref.tenantId : ref.keyId),
    )}`;
  }

  /** Run a cache command; on error, timeout or a disconnected client, report it and answer `undefined`. */
  private async guard<T>(queueName: string, operation: string, fn: () => Promise<T>): Promise<T | undefined> {
    // A client that is not connected would queue the command (or reject it); either way Postgres answers faster.
    if (this.redis.status !== 'ready') {
      this.failed(queueName, operation, new Error(`redis client is ${this.redis.status}`));
      return undefined;
    }
    const ms = this.options.timeoutMs;
    try {
      return await withTimeout(fn(), ms, () => new Error(`redis did not answer within ${ms} ms`));
    } catch (err) {
      this.failed(queueName, operation, err);
      return undefined;
    }
  }

  private failed(queueName: string, operation: string, err: unknown): void {
    this.options.onError(queueName, operation, err);
    // During an outage every call fails; one warning per 10 s says it without flooding the log.
    const now = Date.now();
    if (now - this.lastWarning > 10_000) {
      this.lastWarning = now;
      this.options.logger.warn({ err, operation }, 'idempotency hot cache unavailable; answering from Postgres');
    }
  }
}
