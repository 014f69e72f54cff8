import type pg from 'pg';
import type { Config } from '../config/load-config.js';
import { createPool } from '../db/pool.js';
import type { Logger } from '../logger.js';
import { createRedisClient, type RedisClient } from '../redis.js';
import { DatabaseStore } from './database-store.js';
import { HOT_CACHE_TIMEOUT_MS, HotCacheStore } from './hot-cache-store.js';
import { MemoryStore } from './memory-store.js';
import { RedisStore } from './redis-store.js';
import type { TransactionalStore } from './transactional.js';
import type { IdempotencyStore } from './types.js';

export interface StoreDeps {
  pool?: pg.Pool | undefined;
  redis?: RedisClient | undefined;
  logger: Logger;
  onCacheError(queueName: string, operation: string, err: unknown): void;
}

/** What `processInTransaction` reads and fills itself: its transaction bypasses the store's own `complete()`. */
export type CompletedCache = Pick<HotCacheStore, 'lookup' | 'remember' | 'rememberJson'>;

/**
 * What the idempotency service needs, so that it never asks which class a store is: the store, and what this
 * storage can do beyond the `IdempotencyStore` interface.
 */
export interface StoreCapabilities {
  store: IdempotencyStore;
  /** Postgres under the store: present when `processInTransaction` can run (`storage.type: database`). */
  transactional?: TransactionalStore;
  /** The Redis copy of completed keys in front of Postgres (`storage.database.hot_cache`). */
  cache?: CompletedCache;
  /** Records `cleanup()` removes per statement or script call (`storage.database.batch_size` for Postgres). */
  cleanupBatchSize: number;
  /** Closes the connections this function opened (never the caller's). */
  dispose(): Promise<void>;
}

/**
 * The store `idempotency.storage.type` names: `memory`, `redis`, or `database` (with the Redis hot cache in front
 * unless `storage.database.hot_cache` is false). A pool or Redis client the caller passes is used as is; missing ones
 * are opened from `database.url` (pool size `storage.database.max_connections`) and `redis` (a single server or
 * `redis.cluster`).
 *
 * @example const { store, dispose } = createIdempotencyStore(loadConfig(), { logger, onCacheError: () => {} });
 */
export function createIdempotencyStore(config: Config, deps: StoreDeps): StoreCapabilities {
  const cfg = config.idempotency;
  const owned: Array<() => Promise<unknown>> = [];
  const redis = (cacheOnly: boolean): RedisClient => {
    if (deps.redis) return deps.redis;
    const client = createRedisClient(config.redis, deps.logger, {
      // A cache must fail fast while Redis is down (Postgres answers); a store may wait for a reconnect.
      ...(cacheOnly
        ? { enableOfflineQueue: false, maxRetriesPerRequest: 1 }
        : { enableOfflineQueue: true, maxRetriesPerRequest: 3 }),
      connectionName: 'exactly-once:idempotency',
    });
    owned.push(async () => client.disconnect());
    return client;
  };

  let store: IdempotencyStore;
  let extra: Pick<StoreCapabilities, 'transactional' | 'cache'> = {};
  let cleanupBatchSize = cfg.batchSize;
  switch (cfg.storage.type) {
    case 'memory':
      store = new MemoryStore({
        maxKeys: cfg.storage.memory.maxKeys,
        evictionPolicy: cfg.storage.memory.evictionPolicy,
      });
      break;
    case 'redis':
      store = new RedisStore(redis(false), {
        keyPrefix: cfg.keyPrefix,
        keyPattern: cfg.storage.redis.keyPattern,
        hashKeyPattern: cfg.storage.redis.hashKeyPattern,
        useHashes: cfg.storage.redis.useHashes,
        compression: cfg.storage.redis.compression,
      });
      break;
    case 'database': {
      let pool = deps.pool;
      if (!pool) {
        const created = createPool(config.database.url, deps.logger, {
          max: cfg.storage.database.maxConnections,
          application_name: 'exactly-once:idempotency',
          // A connect timeout only: a statement timeout here would also cut the caller's own statements inside
          // processInTransaction, which `storage.database.transaction_timeout` already bounds.
          connectTimeoutMs: config.database.connectTimeout,
        });
        owned.push(() => created.end());
        pool = created;
      }
      const db = new DatabaseStore(pool, cfg.storage.database.tableName);
      const cache = cfg.storage.database.hotCache
        ? new HotCacheStore(db, redis(true), {
            keyPrefix: cfg.keyPrefix,
            keyPattern: cfg.storage.redis.keyPattern,
            compression: cfg.storage.redis.compression,
            timeoutMs: HOT_CACHE_TIMEOUT_MS,
            logger: deps.logger,
            onError: deps.onCacheError,
          })
        : undefined;
      store = cache ?? db;
      extra = cache ? { transactional: db, cache } : { transactional: db };
      cleanupBatchSize = cfg.storage.database.batchSize;
      break;
    }
  }
  return {
    store,
    ...extra,
    cleanupBatchSize,
    async dispose() {
      await store.close();
      await Promise.allSettled(owned.map((close) => close()));
    },
  };
}
