import type { Config } from './load-config.js';

/**
 * What in this config keeps data in Redis, as the `exactly_once.*` keys that say so: the outbox (`outbox.storage_type:
 * redis`), a Redis destination (`outbox.publisher: list` or `stream`), idempotency keys (`idempotency.storage.type:
 * redis`) and the hot cache in front of Postgres keys (`idempotency.storage.database.hot_cache`). Empty when none
 * does: a relay that publishes to pg-boss, with idempotency keys in Postgres without the cache, in memory or off, runs
 * with no Redis at all (no connection, no `--wait` for it, no readiness probe).
 *
 * @example if (redisUses(config).length === 0) logger.info('Redis is not used');
 */
export function redisUses(config: Pick<Config, 'outbox' | 'idempotency'>): string[] {
  const uses: string[] = [];
  const { outbox } = config;
  if (outbox.enabled && outbox.storageType === 'redis') uses.push('outbox.storage_type: redis');
  if (redisIsDestination(config) && outbox.storageType !== 'redis') uses.push(`outbox.publisher: ${outbox.publisher}`);
  const idempotencyKey = idempotencyRedisUse(config.idempotency);
  if (idempotencyKey) uses.push(idempotencyKey);
  return uses;
}

/** The key that puts idempotency data in Redis (its keys, or the hot cache of Postgres keys), if any. */
export function idempotencyRedisUse(idempotency: Config['idempotency']): string | undefined {
  if (!idempotency.enabled) return undefined;
  if (idempotency.storage.type === 'redis') return 'idempotency.storage.type: redis';
  if (idempotency.storage.type === 'database' && idempotency.storage.database.hotCache) {
    return 'idempotency.storage.database.hot_cache: true';
  }
  return undefined;
}

/**
 * Does the relay push jobs into Redis (so that Redis must keep them across a restart, G1)? Yes with the Redis outbox
 * and with the list and stream publishers; not with pg-boss, whose jobs are rows in Postgres.
 */
export function redisIsDestination(config: Pick<Config, 'outbox'>): boolean {
  const { outbox } = config;
  return outbox.enabled && (outbox.storageType === 'redis' || outbox.publisher !== 'pg-boss');
}
