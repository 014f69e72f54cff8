import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox, storeInOutboxStandalone } from '../src/outbox/writer.js';
import { exitWithin, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';

// G3, the half that says a failing event holds back only its own aggregate, however many events wait behind it. An
// aggregate whose head keeps failing (its list key holds a string: WRONGTYPE) with 1,200 events written behind it in
// one transaction, then events of other aggregates: the spawned relay publishes those within seconds, on either
// storage. (The row-state outbox looked at the oldest 1,000 due events only: all of them waited behind the failing
// head, so nothing else was ever claimed.)

/** Bound for "within seconds": the relay claims in milliseconds; the rest is headroom for a loaded CI machine. */
const PROMPT_MS = 10_000;

let redis: Redis;
let prefix: string;
before(async () => {
  redis = new Redis(REDIS_URL);
  prefix = redisPrefix('no_starvation');
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
});

function behind(broken: string, n: number): NewOutboxEvent[] {
  return Array.from({ length: n }, (_, i) => ({ aggregateId: 'H', eventType: 'e', payload: { i }, queue: broken }));
}

function others(n: number, tag: string): NewOutboxEvent[] {
  return Array.from({ length: n }, (_, i) => ({ aggregateId: `${tag}-${i}`, eventType: 'e', payload: { i } }));
}

async function publishedIds(list: string): Promise<Set<string>> {
  return new Set((await redis.lrange(list, 0, -1)).map((j) => (JSON.parse(j) as { id: string }).id));
}

describe('Postgres outbox', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase('no_starvation');
  });
  after(async () => {
    await db.close();
  });

  const outbox = (label: string) => ({
    queue_pattern: `${prefix}${label}:{priority}`,
    allowed_queues: [`${prefix}*`],
    poll_interval: '200ms',
    max_retries: 1000,
    retry_backoff: { initial_delay: '1s', max_delay: '1s', jitter: false },
  });

  test('1,200 events behind a failing head: the 5 events of other aggregates go out at once', async () => {
    const broken = `${prefix}pg:broken`;
    await redis.set(broken, 'not a list');
    const cfg = outbox('pg1');
    await storeInOutboxStandalone(db.pool, behind(broken, 1200), configFromObject({ outbox: cfg }).outbox);
    const file = writeConfigFile('no-starvation-pg', {
      database: { url: db.url },
      redis: { url: REDIS_URL },
      outbox: cfg,
      metrics: { enabled: false },
    });
    const relay = spawnRelay(file);
    try {
      // Let the relay meet the failing head first, then write the others.
      await waitFor(
        async () =>
          (await db.pool.query("SELECT 1 FROM exactly_once_outbox_parked WHERE aggregate_id = 'H' LIMIT 1")).rows
            .length > 0,
        PROMPT_MS,
        `the failing head to be parked (${relay.stderr()})`,
      );
      const written = await storeInOutboxStandalone(
        db.pool,
        others(5, 'pg1'),
        configFromObject({ outbox: cfg }).outbox,
      );
      const started = performance.now();
      const list = `${prefix}pg1:low`;
      await waitFor(
        async () => {
          const ids = await publishedIds(list);
          return written.every((e) => ids.has(e.id));
        },
        PROMPT_MS,
        `the 5 other aggregates' events (${relay.stderr().slice(-400)})`,
      );
      assert.ok(performance.now() - started < PROMPT_MS);
      const { rows } = await db.pool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE aggregate_id = 'H' AND status = 'pending'",
      );
      assert.equal(rows[0]?.n, 1200, 'the failing aggregate still waits, whole, in order');
    } finally {
      relay.child.kill('SIGTERM');
      await exitWithin(relay, 15_000);
    }
  });

  test('2,000 events behind 100 failing heads: 100 new events of other aggregates go out at once', async () => {
    const cfg = outbox('pg2');
    const events: NewOutboxEvent[] = [];
    for (let h = 0; h < 100; h++) {
      const broken = `${prefix}pg2:broken:${h}`;
      await redis.set(broken, 'not a list');
      for (let i = 0; i < 20; i++) events.push({ aggregateId: `K${h}`, eventType: 'e', payload: { i }, queue: broken });
    }
    await storeInOutboxStandalone(db.pool, events, configFromObject({ outbox: cfg }).outbox);
    const file = writeConfigFile('no-starvation-pg2', {
      database: { url: db.url },
      redis: { url: REDIS_URL },
      outbox: cfg,
      metrics: { enabled: false },
    });
    const relay = spawnRelay(file);
    try {
      await waitFor(
        async () =>
          (
            await db.pool.query<{ n: number }>(
              "SELECT count(*)::int AS n FROM exactly_once_outbox_parked WHERE aggregate_id LIKE 'K%'",
            )
          ).rows[0]?.n === 2000,
        PROMPT_MS * 2,
        `every failing aggregate parked (${relay.stderr().slice(-400)})`,
      );
      const written = await storeInOutboxStandalone(
        db.pool,
        others(100, 'pg2'),
        configFromObject({ outbox: cfg }).outbox,
      );
      const list = `${prefix}pg2:low`;
      await waitFor(
        async () => {
          const ids = await publishedIds(list);
          return written.every((e) => ids.has(e.id));
        },
        PROMPT_MS,
        `the 100 new events (${relay.stderr().slice(-400)})`,
      );
    } finally {
      relay.child.kill('SIGTERM');
      await exitWithin(relay, 15_000);
    }
  });
});

describe('Redis outbox', () => {
  test('1,200 events behind a failing head: the 5 events of other aggregates go out at once', async () => {
    const broken = `${prefix}rd:broken`;
    await redis.set(broken, 'not a list');
    const cfg = {
      storage_type: 'redis',
      queue_pattern: `${prefix}rd:{priority}`,
      allowed_queues: [`${prefix}*`],
      poll_interval: '200ms',
      max_retries: 1000,
      retry_backoff: { initial_delay: '1s', max_delay: '1s', jitter: false },
      redis: { key_prefix: `${prefix}eo:` },
    };
    const outbox = configFromObject({ outbox: cfg }).outbox;
    const write = async (events: NewOutboxEvent[]) => {
      const multi = redis.multi();
      const stored = await storeInOutbox(multi, events, outbox);
      await multi.exec();
      return stored;
    };
    await write(behind(broken, 1200));
    const file = writeConfigFile('no-starvation-redis', {
      redis: { url: REDIS_URL },
      idempotency: { storage: { type: 'redis' } },
      outbox: cfg,
      metrics: { enabled: false },
    });
    const relay = spawnRelay(file, [], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/unused' });
    try {
      const written = await write(others(5, 'rd'));
      const list = `${prefix}rd:low`;
      await waitFor(
        async () => {
          const ids = await publishedIds(list);
          return written.every((e) => ids.has(e.id));
        },
        PROMPT_MS,
        `the 5 other aggregates' events (${relay.stderr().slice(-400)})`,
      );
    } finally {
      relay.child.kill('SIGTERM');
      await exitWithin(relay, 15_000);
    }
  });
});
