import type pg from 'pg';
import type { Config } from '../config/load-config.js';
import type { SqlExecutor } from '../db/executor.js';
import type { RedisClient } from '../redis.js';
import type { OutboxInspector, TrafficCaps } from './outbox-inspector.js';
import { postgresOutboxInspector } from './postgres/inspector.js';
import { RedisOutboxInspector } from './redis/inspector.js';

export type { OutboxInspector, TrafficCaps };
export { postgresOutboxInspector };

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
