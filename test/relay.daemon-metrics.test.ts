import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type HttpRelay, sample, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';

// The metrics an operator scrapes from a real `exactly-once relay` process (issue 8 item 1): before the daemon
// handed its Metrics to the relay it created, every outbox counter of a busy relay read 0.

let db: TestDatabase;
let redis: Redis;
let relay: HttpRelay | undefined;
const prefix = redisPrefix('daemon-metrics');

before(async () => {
  db = await createTestDatabase('daemon_metrics');
  redis = new Redis(REDIS_URL);
});
after(async () => {
  await relay?.stop();
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

const GOOD = 20;
const FLAKY = 2;
const DEAD = 3;

test('a relay process counts published, retried and failed events exactly, and its batches', async () => {
  const flaky = `${prefix}flaky`;
  const dead = `${prefix}dead`;
  // Destinations that are strings: LPUSH answers WRONGTYPE. `flaky` is fixed after the first attempt, `dead` never.
  await redis.set(flaky, 'occupied');
  await redis.set(dead, 'occupied');
  for (let i = 0; i < GOOD; i++)
    await storeInOutboxStandalone(db.pool, { aggregateId: `good-${i}`, eventType: 'e', payload: {} });
  for (let i = 0; i < FLAKY; i++) {
    await storeInOutboxStandalone(
      db.pool,
      { aggregateId: `flaky-${i}`, eventType: 'e', payload: {}, queue: flaky },
      { allowedQueues: [flaky, dead] },
    );
  }
  for (let i = 0; i < DEAD; i++) {
    await storeInOutboxStandalone(
      db.pool,
      { aggregateId: `dead-${i}`, eventType: 'e', payload: {}, queue: dead },
      { allowedQueues: [flaky, dead] },
    );
  }

  const file = writeConfigFile('daemon-metrics', {
    database: { url: db.url },
    redis: { url: REDIS_URL },
    outbox: {
      queue_pattern: `${prefix}jobqueue:{priority}_priority`,
      allowed_queues: [flaky, dead],
      // One retry, five seconds later (no jitter): time enough to fix `flaky` between the attempts, even on a
      // loaded CI machine.
      max_retries: 1,
      retry_backoff: { initial_delay: '5s', jitter: false },
    },
  });
  relay = await startHttpRelay(file);

  const count = async (sql: string) => (await db.pool.query<{ n: number }>(sql)).rows[0]?.n ?? -1;
  // On a timeout, say what the rows and the relay said: a wait that fails on a loaded machine must explain itself.
  const evidence = async () =>
    `rows: ${JSON.stringify((await db.pool.query('SELECT aggregate_id, status, retry_count, last_error FROM exactly_once_outbox WHERE retry_count > 0 OR status <> $1', ['published'])).rows)}\nrelay output:\n${relay?.stderr()}`;
  await waitFor(
    async () =>
      (await count(
        `SELECT count(*)::int AS n FROM exactly_once_outbox WHERE queue = '${flaky}' AND retry_count = 1`,
      )) === FLAKY,
    60_000,
    'the first failed attempt of the flaky events',
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await evidence()}`);
  });
  await redis.del(flaky);
  await waitFor(
    async () =>
      (await count(`SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'published'`)) === GOOD + FLAKY &&
      (await count(`SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'failed'`)) === DEAD,
    60_000,
    'every event published or failed',
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await evidence()}`);
  });
  // The dead events tried twice each; the flaky ones, published on their retry, left the parked table (their
  // failed attempts are in exactly_once_outbox_retried_total below).
  assert.equal(
    await count('SELECT sum(retry_count)::int AS n FROM exactly_once_outbox WHERE retry_count > 0'),
    DEAD * 2,
  );

  const res = await relay.get('/metrics');
  assert.equal(res.status, 200, res.text);
  const text = res.text;
  assert.equal(sample(text, 'exactly_once_outbox_published_total'), GOOD + FLAKY);
  // First attempts of the flaky and the dead events; the dead ones' second attempt counts as failed.
  assert.equal(sample(text, 'exactly_once_outbox_retried_total'), FLAKY + DEAD);
  assert.equal(sample(text, 'exactly_once_outbox_failed_total'), DEAD);
  // Claimed events over all batches: every event once, the flaky and dead ones twice.
  assert.equal(sample(text, 'exactly_once_outbox_batch_size_sum'), GOOD + 2 * FLAKY + 2 * DEAD);
  const batches = sample(text, 'exactly_once_outbox_batch_size_count') ?? 0;
  assert.ok(batches >= 2, `batches ${batches}`);
  assert.equal(sample(text, 'exactly_once_outbox_processing_duration_seconds_count'), batches);
  assert.ok((sample(text, 'exactly_once_redis_round_trip_seconds_count') ?? 0) >= 2);
  assert.equal(sample(text, 'exactly_once_outbox_backlog_events', { status: 'failed' }), DEAD);

  const { code, signal } = await relay.stop();
  assert.deepEqual({ code, signal }, { code: 0, signal: null });
});
