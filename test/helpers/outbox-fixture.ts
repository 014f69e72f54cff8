import { Redis } from 'ioredis';
import { Kysely, PostgresDialect } from 'kysely';
import { type Config, configFromObject } from '../../src/config/load-config.js';
import { Relay } from '../../src/outbox/postgres/relay.js';
import type { Publisher } from '../../src/outbox/types.js';
import { createPublisher } from '../../src/publishers/create-publisher.js';
import { MarkedBatchPublisher } from '../../src/publishers/marked-batch.js';
import { createTestDatabase, deleteRedisPrefix, REDIS_URL, redisPrefix, type TestDatabase } from './services.js';

export interface OutboxFixture {
  db: TestDatabase;
  // biome-ignore lint/suspicious/noExplicitAny: tests create ad-hoc tables
  kysely: Kysely<any>;
  redis: Redis;
  prefix: string;
  config: Config;
  /** The list a `low` priority event lands in. */
  lowQueue: string;
  highQueue: string;
  relay(overrides?: { publisher?: Publisher; config?: Config }): Relay;
  publisher(redis?: Redis): MarkedBatchPublisher;
  /** All jobs of a list, oldest first (the order a right-popping worker sees them). */
  jobs(list?: string): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

/** A migrated database, a Redis key prefix, and a config pointing at both. */
export async function outboxFixture(label: string, outbox: Record<string, unknown> = {}): Promise<OutboxFixture> {
  const db = await createTestDatabase(label);
  const redis = new Redis(REDIS_URL);
  const prefix = redisPrefix(label);
  const config = configFromObject({
    database: { url: db.url },
    redis: { url: REDIS_URL },
    // Every list under the file's prefix may be an event's destination (tests name their own, e.g. a WRONGTYPE key).
    outbox: {
      queue_pattern: `${prefix}jobqueue:{priority}_priority`,
      allowed_queues: [`${prefix}*`],
      poll_interval: '200ms',
      ...outbox,
    },
  });
  const kysely = new Kysely({ dialect: new PostgresDialect({ pool: db.pool }) });
  // The publisher the config names, built as the Manager builds it; always a Redis one here (tests call `forget`).
  const publisher = (client: Redis = redis): MarkedBatchPublisher => {
    const built = createPublisher(config, { redis: client });
    if (!(built instanceof MarkedBatchPublisher)) throw new Error('the outbox fixture publishes to Redis');
    return built;
  };
  return {
    db,
    kysely,
    redis,
    prefix,
    config,
    lowQueue: `${prefix}jobqueue:low_priority`,
    highQueue: `${prefix}jobqueue:high_priority`,
    publisher,
    relay: (o = {}) => new Relay({ config: o.config ?? config, pool: db.pool, publisher: o.publisher ?? publisher() }),
    async jobs(list = `${prefix}jobqueue:low_priority`) {
      const raw = await redis.lrange(list, 0, -1);
      return raw.reverse().map((j) => JSON.parse(j) as Record<string, unknown>);
    },
    async close() {
      await deleteRedisPrefix(redis, prefix);
      redis.disconnect();
      await db.close();
    },
  };
}
