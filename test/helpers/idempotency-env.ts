import { Redis } from 'ioredis';
import { type Config, configFromObject } from '../../src/config/load-config.js';
import { IdempotencyService, type IdempotencyServiceOptions } from '../../src/idempotency/index.js';
import { REDIS_URL } from './services.js';

export type StorageVariant = 'memory' | 'redis' | 'redis-hashes-compressed' | 'database' | 'database-hot-cache';

export const STORAGE_VARIANTS: readonly StorageVariant[] = [
  'memory',
  'redis',
  'redis-hashes-compressed',
  'database',
  'database-hot-cache',
];

export interface IdempotencyTestSettings {
  databaseUrl: string;
  redisUrl?: string;
  keyPrefix: string;
  variant?: StorageVariant;
  /** Short by default so crash and wait tests finish in seconds. */
  lease?: string;
  waitTimeout?: string;
  defaultTtl?: string;
  extra?: Record<string, unknown>;
}

/** A config for one storage variant, with test-sized lease and wait times. */
export function idempotencyTestConfig(s: IdempotencyTestSettings): Config {
  const variant = s.variant ?? 'database-hot-cache';
  const storage: Record<string, unknown> = {
    type: variant.startsWith('database') ? 'database' : variant.startsWith('redis') ? 'redis' : 'memory',
    database: { hot_cache: variant === 'database-hot-cache' },
    redis: { use_hashes: variant === 'redis-hashes-compressed', compression: variant === 'redis-hashes-compressed' },
  };
  return configFromObject({
    database: { url: s.databaseUrl },
    redis: { url: s.redisUrl ?? REDIS_URL },
    idempotency: {
      key_prefix: s.keyPrefix,
      lease: s.lease ?? '1s',
      wait_timeout: s.waitTimeout ?? '5s',
      default_ttl: s.defaultTtl ?? '1h',
      storage,
      ...s.extra,
    },
  });
}

/** A Redis client that fails fast instead of retrying for long (tests stop servers on purpose). */
export function testRedis(url = REDIS_URL): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
  redis.on('error', () => {});
  return redis;
}

export function testService(settings: IdempotencyTestSettings, deps: Omit<IdempotencyServiceOptions, 'config'> = {}) {
  return new IdempotencyService({ config: idempotencyTestConfig(settings), ...deps });
}
