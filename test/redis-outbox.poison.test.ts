import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { runCli, showCli } from './helpers/cli-process.js';
import { type HttpRelay, logLines, sample, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import { deleteRedisPrefix, REDIS_URL, redisPrefix, waitFor } from './helpers/services.js';

// Poison events in the Redis outbox: their destination keys hold strings, so every LPUSH answers WRONGTYPE. Each is
// retried with backoff (G3: its aggregate's next event waits), marked failed after max_retries while other aggregates
// flow, and operators list and replay them: one through the CLI (outbox list / retry, stats), one through the admin
// API. Both poison at once and the CLI runs side by side, so the file pays one relay start-up and two CLI rounds.

const prefix = redisPrefix('redis_outbox_poison');
const outbox = {
  storage_type: 'redis',
  redis: { key_prefix: `${prefix}outbox:` },
  queue_pattern: `${prefix}{priority}`,
  allowed_queues: [`${prefix}q:*`],
  poll_interval: '50ms',
  max_retries: 2,
  retry_backoff: { initial_delay: '10ms', max_delay: '20ms', multiplier: 2, jitter: false },
};
const config = configFromObject({ outbox });
const bad = `${prefix}q:bad`;
const bad2 = `${prefix}q:bad2`;
const low = `${prefix}low`;
let redis: Redis;
let relay: HttpRelay;
let configFile: string;

before(() => {
  redis = new Redis(REDIS_URL);
  // No Postgres: the outbox and the idempotency keys (for `stats`) are in Redis, under this file's prefix.
  configFile = writeConfigFile('redis-poison', {
    redis: { url: REDIS_URL },
    metrics: { collection_interval: 0 },
    idempotency: {
      key_prefix: `${prefix}idem:`,
      storage: {
        type: 'redis',
        redis: {
          key_pattern: `${prefix}{queue}:idempotency:{tenant}:{key}`,
          hash_key_pattern: `${prefix}{queue}:idempotency:{tenant}`,
        },
      },
    },
    outbox,
  });
});
after(async () => {
  await relay?.stop();
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
});

async function write(events: NewOutboxEvent[]): Promise<string[]> {
  const multi = redis.multi();
  const stored = await storeInOutbox(multi, events, config.outbox);
  await multi.exec();
  return stored.map((e) => e.id);
}

const cli = (...args: string[]) => runCli([...args, '--config', configFile], {});

test('poison events retry with backoff, end failed while others flow, and are listed and replayed', async () => {
  await redis.set(bad, 'not a list');
  await redis.set(bad2, 'not a list either');
  const [poisonId, afterPoisonId] = (await write([
    { aggregateId: 'p', eventType: 'poison', payload: {}, queue: bad },
    { aggregateId: 'p', eventType: 'after-poison', payload: {} },
  ])) as [string, string];
  const [second] = (await write([{ aggregateId: 'p2', eventType: 'poison', payload: {}, queue: bad2 }])) as [string];
  await write(Array.from({ length: 20 }, (_, i) => ({ aggregateId: `ok${i}`, eventType: 'fine', payload: { i } })));

  relay = await startHttpRelay(configFile);
  const api = `${relay.url}/api/v1/exactly-once`;
  const failed = async () =>
    ((await relay.get('/api/v1/exactly-once/outbox?status=failed')).json() as { events: { id: string }[] }).events;
  await waitFor(async () => (await failed()).length === 2, 30_000, 'the poison events to be marked failed');
  // The others flowed; the poison's successor went once the poison was marked failed (it only waited behind it).
  await waitFor(async () => (await redis.llen(low)) === 21, 10_000, 'every other event published');
  const low21 = (await redis.lrange(low, 0, -1)).map((j) => JSON.parse(j).id);
  assert.ok(low21.includes(afterPoisonId), 'the poison aggregate flows again after the poison is failed');

  // The CLI reads while the API is checked: each CLI run is a process start-up of its own.
  const clis = Promise.all([
    cli('outbox', 'list', '--status', 'failed', '--json'),
    cli('stats', '--queue', 'q', '--json'),
  ]);

  const page = (await relay.get('/api/v1/exactly-once/outbox?status=failed')).json() as {
    events: { id: string; retry_count: number; last_error: string; status: string }[];
    backlog: { failed: number; pending: number };
  };
  assert.deepEqual(
    page.events.map((e) => e.id),
    [poisonId, second],
  );
  for (const dead of page.events) {
    assert.equal(dead.retry_count, 3, 'max_retries 2: the first attempt and two retries');
    assert.match(dead.last_error, /^WRONGTYPE/);
  }
  assert.deepEqual([page.backlog.failed, page.backlog.pending], [2, 0]);
  const retries = logLines(relay.stderr(), 'publish failed; retry scheduled').map((l) => l.delayMs as number);
  assert.deepEqual(
    retries.sort((a, b) => a - b),
    [10, 10, 20, 20],
    'the configured backoff, no jitter, for each poison event',
  );

  const metrics = (await relay.get('/metrics')).text;
  assert.equal(sample(metrics, 'exactly_once_outbox_failed_total'), 2);
  assert.equal(sample(metrics, 'exactly_once_outbox_retried_total'), 4);
  assert.equal(sample(metrics, 'exactly_once_outbox_published_total'), 21);
  assert.equal(sample(metrics, 'exactly_once_outbox_backlog_events', { status: 'failed' }), 2);

  // A filter the Redis outbox cannot serve is refused, naming it.
  const filtered = await relay.get('/api/v1/exactly-once/outbox?aggregate_id=p');
  assert.equal(filtered.status, 400, filtered.text);
  assert.match(filtered.text, /aggregate_id.*storage_type: redis/);

  // The CLI sees the same.
  const [listed, stats] = await clis;
  assert.equal(listed.code, 0, showCli(listed));
  assert.deepEqual(
    (JSON.parse(listed.stdout) as { events: { id: string }[] }).events.map((e) => e.id),
    [poisonId, second],
  );
  assert.equal(stats.code, 0, showCli(stats));
  assert.deepEqual((JSON.parse(stats.stdout) as { outbox: unknown }).outbox, {
    pending: 0,
    failed: 2,
    oldest_pending_age_seconds: 0,
  });

  // Fixed by the operator; the first replayed from the CLI, the second through the admin API, at once: each is
  // published exactly once.
  await redis.del(bad, bad2);
  const [replayed, retry] = await Promise.all([
    cli('outbox', 'retry', poisonId),
    fetch(`${api}/outbox/retry`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ids: [second] }),
    }),
  ]);
  assert.equal(replayed.code, 0, showCli(replayed));
  assert.equal(retry.status, 200);
  assert.deepEqual(await retry.json(), { retried: 1, ids: [second], not_retried: [] });
  // POST /outbox publishes what is due now (the doorbell has woken the relay already: either may move it).
  const now = await fetch(`${api}/outbox`, { method: 'POST' });
  assert.equal(now.status, 200);
  await waitFor(
    async () => (await redis.llen(bad)) === 1 && (await redis.llen(bad2)) === 1,
    10_000,
    'both replayed events published',
  );
  assert.equal(JSON.parse((await redis.lindex(bad, 0)) as string).id, poisonId);
  assert.equal(JSON.parse((await redis.lindex(bad2, 0)) as string).id, second);
  assert.deepEqual([await redis.llen(bad), await redis.llen(bad2)], [1, 1], 'each once');
  assert.equal((await failed()).length, 0);
});
