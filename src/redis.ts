import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config/load-config.js';
import type { Logger } from './logger.js';

/** `redis.connect_timeout`'s default, for clients created without config. */
export const DEFAULT_REDIS_CONNECT_TIMEOUT_MS = 5000;

/**
 * A client of a single Redis server or of a Redis Cluster. Everything this project runs on Redis works through both:
 * each Lua script touches one slot, and what must visit every key (SCAN-based counts and cleanup) walks every master
 * (`mastersOf`).
 */
export type RedisClient = Redis | Cluster;

/** Failed reconnects back off from 100 ms to 2 s: fast enough after a blip, gentle on a server that is down. */
const reconnectDelay = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000);

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
    retryStrategy: reconnectDelay,
    ...options,
  });
  logConnection(redis, logger);
  return redis;
}

/** Options for `createRedisClient`; the same fail-fast defaults apply to a single server and to cluster nodes. */
export interface RedisClientOptions {
  /** Queue commands while (re)connecting instead of failing them: for one-shot operator commands. @defaultValue false */
  enableOfflineQueue?: boolean;
  /** @defaultValue 1 */
  maxRetriesPerRequest?: number | null;
  /** Shown in `CLIENT LIST`. */
  connectionName?: string;
}

/**
 * The client `redis` config asks for: an ioredis `Cluster` when `redis.cluster.nodes` is set, else a single-server
 * client of `redis.url`. Both fail fast while disconnected and log connection errors once per outage, as `createRedis`.
 *
 * @example const redis = createRedisClient(config.redis, logger); // Redis | Cluster
 */
export function createRedisClient(
  config: Config['redis'],
  logger: Logger,
  options: RedisClientOptions = {},
): RedisClient {
  const common = {
    enableOfflineQueue: options.enableOfflineQueue ?? false,
    maxRetriesPerRequest: options.maxRetriesPerRequest === undefined ? 1 : options.maxRetriesPerRequest,
    connectTimeout: config.connectTimeout,
    ...(options.connectionName ? { connectionName: options.connectionName } : {}),
  };
  if (!config.cluster) return createRedis(config.url, logger, common);
  const c = config.cluster;
  // The schema checked that every node shares the first node's scheme and credentials (cluster clients use one set).
  const first = new URL(c.nodes[0] as string);
  const clusterOptions: ClusterOptions = {
    enableOfflineQueue: common.enableOfflineQueue,
    maxRedirections: c.maxRedirections,
    retryDelayOnFailover: c.retryDelayOnFailover,
    retryDelayOnClusterDown: c.retryDelayOnClusterDown,
    clusterRetryStrategy: reconnectDelay,
    // Writes only: a replica may lag, and every command here is a write or must read its own writes.
    scaleReads: 'master',
    redisOptions: {
      maxRetriesPerRequest: common.maxRetriesPerRequest,
      connectTimeout: common.connectTimeout,
      ...(common.connectionName ? { connectionName: common.connectionName } : {}),
      ...(first.username ? { username: decodeURIComponent(first.username) } : {}),
      ...(first.password ? { password: decodeURIComponent(first.password) } : {}),
      ...(first.protocol === 'rediss:' ? { tls: {} } : {}),
    },
  };
  const cluster = new Cluster(
    c.nodes.map((node) => {
      const u = new URL(node);
      return { host: u.hostname, port: Number(u.port || 6379) };
    }),
    clusterOptions,
  );
  logConnection(cluster, logger);
  return cluster;
}

/** Log an outage once, and its end, instead of every failed reconnect. */
function logConnection(redis: RedisClient, logger: Logger): void {
  let down = false;
  redis.on('error', (err) => {
    if (!down) logger.warn({ err }, 'Redis connection error; reconnecting');
    down = true;
  });
  redis.on('ready', () => {
    if (down) logger.info('Redis connection restored');
    down = false;
  });
}

/** Whether `redis` is a cluster client (without `instanceof`, which a second copy of ioredis would defeat). */
export function isCluster(redis: RedisClient): redis is Cluster {
  return (redis as { isCluster?: boolean }).isCluster === true;
}

/**
 * The servers holding the data: every master of a cluster (as the client knows them now), or the single server.
 * For what must see every key — SCAN, INFO — since a cluster client sends a keyless command to one node only.
 */
export function mastersOf(redis: RedisClient): Redis[] {
  return isCluster(redis) ? redis.nodes('master') : [redis];
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

/** What `redis` config points at, for messages: `host:port`, or `cluster host:port,host:port`. No credentials. */
export function redisConfigTarget(config: Config['redis']): string {
  return config.cluster ? `cluster ${config.cluster.nodes.map(redisTarget).join(',')}` : redisTarget(config.url);
}
