import type { Redis } from 'ioredis';

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
