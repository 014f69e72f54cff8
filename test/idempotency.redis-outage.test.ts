import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { IdempotencyService } from '../src/idempotency/index.js';
import { testRedis, testService } from './helpers/idempotency-env.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  type RedisServer,
  redisPrefix,
  startRedisServer,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';

let db: TestDatabase;
let server: RedisServer;
let redis: ReturnType<typeof testRedis>;
let service: IdempotencyService;
const prefix = redisPrefix('idem-outage');
const cacheErrors: string[] = [];

before(async () => {
  db = await createTestDatabase('idem_outage');
  server = await startRedisServer();
  redis = testRedis(server.url);
  service = testService(
    { databaseUrl: db.url, redisUrl: server.url, keyPrefix: prefix, variant: 'database-hot-cache' },
    { pool: db.pool, redis, metrics: { storageError: (_q, op) => cacheErrors.push(op) } },
  );
});
after(async () => {
  await service.close();
  // The server is this file's own and dies below, but a run must not depend on that to leave nothing behind.
  if (redis.status === 'ready') await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await server.kill();
  await db.close();
});

const cachedKeys = async () => (await redis.keys(`${prefix}cache:*`)).length;
let runs = 0;
const job = (suffix: string) =>
  service.processWithIdempotency(service.generateIdempotencyKey('mail', '', suffix), async () => {
    runs++;
    return { sent: suffix };
  });

test('completed keys are cached in Redis with the key TTL', async () => {
  assert.equal((await job('welcome-1')).duplicate, false);
  assert.equal(await cachedKeys(), 1);
  const [key] = await redis.keys(`${prefix}cache:*`);
  const ttl = await redis.pttl(key as string);
  assert.ok(ttl > 3_500_000 && ttl <= 3_600_000, `cache TTL ${ttl} ms follows default_ttl 1h`);
});

test('a cached duplicate is answered from Redis without touching Postgres', async () => {
  // Hold the key's row lock: any Postgres claim of this key would now block until ROLLBACK.
  const blocker = await db.pool.connect();
  try {
    await blocker.query('BEGIN');
    await blocker.query("SELECT 1 FROM idempotency_keys WHERE key_id = 'mail::welcome-1' FOR UPDATE");
    // Either the answer comes, or a backend of this database starts waiting on that lock (the call went to Postgres).
    let answered = false;
    const blocked = waitFor(
      async () => {
        if (answered) return true;
        const { rows } = await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
        );
        return (rows[0]?.n ?? 0) > 0;
      },
      10_000,
      'the duplicate to be answered',
    ).then(() => 'blocked on Postgres');
    const answer = await Promise.race([job('welcome-1'), blocked]);
    answered = true;
    await blocked.catch(() => {});
    assert.deepEqual(answer, { duplicate: true, result: { sent: 'welcome-1' } });
  } finally {
    await blocker.query('ROLLBACK');
    blocker.release();
  }
});

test('Redis flushed: duplicates are still detected from Postgres, and the cache refills', async () => {
  await redis.flushall();
  assert.deepEqual(await job('welcome-1'), { duplicate: true, result: { sent: 'welcome-1' } });
  assert.equal(runs, 1);
  assert.equal(await cachedKeys(), 1, 'the Postgres answer was cached again');
});

test('Redis stopped: duplicates are still detected and new jobs still run, without waiting on Redis', async () => {
  await server.kill();
  await waitFor(() => redis.status !== 'ready', 5000, 'the client to notice the outage');
  const started = Date.now();
  assert.deepEqual(await job('welcome-1'), { duplicate: true, result: { sent: 'welcome-1' } });
  assert.deepEqual(await job('welcome-2'), { duplicate: false, result: { sent: 'welcome-2' } });
  assert.deepEqual(await job('welcome-2'), { duplicate: true, result: { sent: 'welcome-2' } });
  assert.ok(Date.now() - started < 2000, 'no call waited for the dead Redis');
  assert.equal(runs, 2);
  assert.ok(
    cacheErrors.some((op) => op.startsWith('cache_')),
    `cache errors counted: ${cacheErrors.join(',')}`,
  );
  const stats = await service.getDedupStats('mail');
  assert.deepEqual([stats.totalKeys, stats.duplicatesAvoided], [2, 4]);
});

test('Redis back (empty): still no second run, and the cache fills again', async () => {
  await server.start();
  await waitFor(() => redis.status === 'ready', 10_000, 'the client to reconnect');
  assert.equal((await job('welcome-1')).duplicate, true);
  assert.equal((await job('welcome-2')).duplicate, true);
  assert.equal(runs, 2);
  assert.equal(await cachedKeys(), 2);
});
