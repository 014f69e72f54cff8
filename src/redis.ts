import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './logger.js';

/**
 * An ioredis client for the relay and stores. Commands fail fast while disconnected (no offline queue) so callers
 * back off instead of piling up work; ioredis reconnects by itself. Errors are logged, never unhandled.
 */
export function createRedis(url: string, logger: Logger, options: RedisOptions = {}): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    ...options,
  });
  let down = false;
  redis.on('error', (err) => {
    if (!down) logger.warn({ err }, 'Redis connection error; reconnecting');
    down = true;
  });
  redis.on('ready', () => {
    if (down) logger.info('Redis connection restored');
    down = false;
  });
  return redis;
}
