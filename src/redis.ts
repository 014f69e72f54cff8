import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './logger.js';

/** `redis.connect_timeout`'s default, for clients created without config. */
export const DEFAULT_REDIS_CONNECT_TIMEOUT_MS = 5000;

/**
 * An ioredis client for the relay and stores. Commands fail fast while disconnected (no offline queue) so callers
 * back off instead of piling up work; ioredis reconnects by itself. A TCP connect that takes longer than
 * `connectTimeout` (`redis.connect_timeout`, default 5 s) is abandoned and retried. Errors are logged, never unhandled.
 *
 * @example const redis = createRedis(config.redis.url, logger, { connectTimeout: config.redis.connectTimeout });
 */
export function createRedis(url: string, logger: Logger, options: RedisOptions = {}): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: DEFAULT_REDIS_CONNECT_TIMEOUT_MS,
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

/** `host:port[/db]` of a Redis URL, without user or password, for messages. */
export function redisTarget(url: string): string {
  if (url.startsWith('/')) return url;
  try {
    const u = new URL(url);
    return `${u.hostname || '127.0.0.1'}:${u.port || '6379'}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return '(invalid REDIS_URL)';
  }
}
