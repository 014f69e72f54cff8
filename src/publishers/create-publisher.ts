import type { Config } from '../config/load-config.js';
import type { Logger } from '../logger.js';
import type { Publisher } from '../outbox/types.js';
import type { RedisClient } from '../redis.js';
import { PgBossPublisher } from './pg-boss.js';
import { RedisListPublisher } from './redis-list.js';
import { RedisStreamPublisher } from './redis-stream.js';

export interface PublisherDeps {
  /** A single-server or cluster client; both publishers group their keys by slot on a cluster. */
  redis: RedisClient;
  /** Called with each publish round trip's time in seconds (the `exactly_once_redis_round_trip_seconds` histogram). */
  onRoundTrip?: (seconds: number) => void;
  /** Where a publisher with a life of its own (pg-boss) logs. */
  logger?: Logger;
}

/**
 * The publisher `outbox` config names: the one place that maps config to a destination, so the Manager (and every
 * relay it creates) publishes where the config says.
 *
 * @example const publisher = createPublisher(config, { redis });
 */
export function createPublisher(config: Config, deps: PublisherDeps): Publisher {
  const o = config.outbox;
  const common = {
    queuePattern: o.queuePattern,
    defaultPriority: o.defaultPriority,
    dedupWindowMs: o.dedupWindow,
    timeoutMs: o.publishTimeout,
    maxJobBytes: o.maxJobBytes,
    // Events may pick a stream by header (`destination: stream`) whatever the publisher: trim those streams too.
    maxlen: o.stream.maxlen,
    ...(deps.onRoundTrip ? { onRoundTrip: deps.onRoundTrip } : {}),
  };
  switch (o.publisher) {
    case 'list':
      return new RedisListPublisher(deps.redis, common);
    case 'stream':
      return new RedisStreamPublisher(deps.redis, common);
    case 'pg-boss': {
      const q = o.pgBoss.queueOptions;
      return new PgBossPublisher({
        databaseUrl: config.database.url,
        schema: o.pgBoss.schema,
        queuePattern: o.pgBoss.queue ?? o.queuePattern,
        defaultPriority: o.defaultPriority,
        createQueues: o.pgBoss.createQueues,
        queueOptions: {
          policy: q.policy,
          retryLimit: q.retryLimit,
          retryDelayMs: q.retryDelay,
          retryBackoff: q.retryBackoff,
          expireInMs: q.expireIn,
          ...(q.deadLetter ? { deadLetter: q.deadLetter } : {}),
        },
        connectTimeoutMs: config.database.connectTimeout,
        ...(deps.logger ? { logger: deps.logger } : {}),
      });
    }
  }
}
