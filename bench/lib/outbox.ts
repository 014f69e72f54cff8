import type { Redis } from 'ioredis';
import type pg from 'pg';
import { type Config, configFromObject } from '../../src/config/load-config.js';
import { Relay } from '../../src/outbox/postgres/relay.js';
import type { RelayMetrics } from '../../src/outbox/relay-core.js';
import type { Publisher } from '../../src/outbox/types.js';
import { createPublisher } from '../../src/publishers/create-publisher.js';

/**
 * Fill the outbox with `n` events straight from SQL (generate_series: the writer's own cost is the producer
 * benchmark's business): `pending`, committed by this statement's transaction, or `published` history (transaction id
 * 3, older than every cursor's snapshot). Event i belongs to aggregate `a<i mod aggregates>`; payloads look like a
 * small job. Ids are time-ordered like the writer's UUIDv7, so the id index is filled the way the writer fills it.
 */
export async function seedPending(
  pool: pg.Pool,
  n: number,
  aggregates: number,
  status: 'pending' | 'published' = 'pending',
  /** another table of the same columns (the baselines' row-state outbox) */
  table = 'exactly_once_outbox_events',
): Promise<void> {
  const chunk = 250_000;
  for (let from = 0; from < n; from += chunk) {
    const to = Math.min(n, from + chunk) - 1;
    await pool.query(
      `INSERT INTO ${table}
         (${status === 'published' ? 'txid, ' : ''}id, aggregate_type, aggregate_id, event_type, payload, headers)
       SELECT ${status === 'published' ? "'3'::xid8, " : ''}
              (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
                || substr(md5(random()::text), 1, 20))::uuid,
              'bench', 'a' || (i % $3), 'bench.event',
              jsonb_build_object('n', i / $3, 'filepath', '/data/file-' || i, 'filesize', 1024 + i % 4096),
              '{"priority":"low"}'::jsonb
         FROM generate_series($1::bigint, $2::bigint) AS i`,
      [from, to, aggregates],
    );
  }
}

/** The relay config the benches use: everything default except what a bench sets. */
export function relayConfig(dbUrl: string, redisUrl: string, prefix: string, outbox: Record<string, unknown>): Config {
  return configFromObject({
    database: { url: dbUrl },
    redis: { url: redisUrl },
    outbox: {
      queue_pattern: `${prefix}jobqueue:{priority}_priority`,
      // High-water marks outlive a bench run by minutes at most, even if the run is interrupted before cleanup.
      dedup_window: '10m',
      ...outbox,
    },
  });
}

export function benchPublisher(redis: Redis, config: Config): Publisher {
  return createPublisher(config, { redis });
}

/**
 * Start a relay and resolve with the seconds it took to publish `n` events (counted through its metrics hook, so the
 * bench adds no queries of its own while it runs).
 */
export async function timeRelayDrain(options: {
  config: Config;
  pool: pg.Pool;
  redis: Redis;
  n: number;
  timeoutMs?: number;
  /** @defaultValue the publisher `config` names, on `redis` (benchPublisher) */
  publisher?: Publisher;
}): Promise<number> {
  let published = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const metrics: RelayMetrics = {
    outboxPublished(count) {
      published += count;
      if (published >= options.n) done();
    },
    outboxFailed() {},
    outboxBatch() {},
    redisRoundTrip() {},
  };
  const relay = new Relay({
    config: options.config,
    pool: options.pool,
    publisher: options.publisher ?? benchPublisher(options.redis, options.config),
    metrics,
  });
  await relay.start();
  // From the first claim: start() checks the schema and opens the LISTEN connection first, and the baselines' clocks
  // also start with their connections open. The loops have only just asked the pool for a connection.
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      finished,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`relay drain timed out after publishing ${published} of ${options.n}`)),
          options.timeoutMs ?? 600_000,
        );
      }),
    ]);
    return (performance.now() - started) / 1000;
  } finally {
    clearTimeout(timer);
    await relay.stop();
  }
}
