import type { Redis } from 'ioredis';
import type { Config } from './config/load-config.js';

/** What the destination Redis keeps across a restart, as far as it tells us. */
export interface RedisPersistence {
  /** `appendonly yes`: every write is logged before Redis answers it. */
  aof: boolean;
  /** `appendfsync` (`always` | `everysec` | `no`); `undefined` when CONFIG is disabled or renamed. */
  appendfsync: string | undefined;
  /** The RDB `save` schedule (`""` = no snapshots); `undefined` when CONFIG is unavailable. */
  save: string | undefined;
  /**
   * AOF on and fsynced at least every second: a restart loses at most about a second of writes. Without CONFIG the
   * fsync policy is unknown and Redis's default (`everysec`) is assumed.
   */
  durable: boolean;
}

/**
 * Ask the destination Redis how it persists (G1 needs its jobs to survive a Redis restart): `INFO persistence` for
 * `aof_enabled`, then `CONFIG GET appendfsync` and `save`, tolerating a CONFIG command that managed services disable
 * or rename. RDB snapshots alone do not count as durable: everything since the last snapshot is lost.
 *
 * @example const { durable } = await checkRedisPersistence(redis); if (!durable) logger.warn('...');
 */
export async function checkRedisPersistence(redis: Pick<Redis, 'info' | 'config'>): Promise<RedisPersistence> {
  const info = await redis.info('persistence');
  const aof = /^aof_enabled:1\s*$/m.test(info);
  let appendfsync: string | undefined;
  let save: string | undefined;
  try {
    appendfsync = configValue(await redis.config('GET', 'appendfsync'));
    save = configValue(await redis.config('GET', 'save'));
  } catch {
    // CONFIG disabled (managed Redis) or renamed: INFO is all we have.
  }
  return { aof, appendfsync, save, durable: aof && appendfsync !== 'no' };
}

function configValue(reply: unknown): string | undefined {
  // [name, value] pairs; ioredis returns them as a flat array.
  return Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : undefined;
}

/**
 * What a Redis restart without durable persistence would lose under this config, as the relay's start-up warning
 * says it, or `undefined` when nothing there is at risk (then the relay neither checks nor warns):
 * - the outbox in Redis (`outbox.storage_type: redis`): the outbox itself, events and the jobs moved from them;
 * - the Postgres outbox with a Redis destination (`publisher: list | stream`): jobs Postgres already marks published;
 * - idempotency keys kept only in Redis (`idempotency.storage.type: redis`): a redelivered job runs again.
 * The pg-boss destination keeps its jobs in Postgres, and the database store's hot cache is only a cache.
 *
 * @example const warning = redisDurabilityWarning(config); if (warning) await reportRedisPersistence(..., warning);
 */
export function redisDurabilityWarning(config: Pick<Config, 'outbox' | 'idempotency'>): string | undefined {
  const o = config.outbox;
  const outboxInRedis = o.enabled && o.storageType === 'redis';
  const jobsInRedis = o.enabled && o.storageType === 'database' && o.publisher !== 'pg-boss';
  const keysInRedis = config.idempotency.enabled && config.idempotency.storage.type === 'redis';
  const advice = 'Run it with appendonly yes and appendfsync everysec (or always).';
  if (jobsInRedis && !keysInRedis) {
    return (
      'DESTINATION REDIS DOES NOT PERSIST JOBS DURABLY: a Redis restart loses jobs that Postgres already marks ' +
      `published, and no relay will push them again. ${advice}`
    );
  }
  const lost = [
    ...(outboxInRedis ? ['outbox events your EXEC committed and the jobs the relay moved from them'] : []),
    ...(jobsInRedis ? ['jobs that Postgres already marks published, which no relay pushes again'] : []),
    ...(keysInRedis ? ['completed idempotency keys, so a job delivered again runs its effect twice'] : []),
  ];
  if (lost.length === 0) return undefined;
  return `REDIS DOES NOT PERSIST ITS DATA DURABLY: a Redis restart loses ${lost.join('; and ')}. ${advice}`;
}
