import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { outboxKeys } from '../src/outbox/redis/keys.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { runCli, showCli } from './helpers/cli-process.js';
import { type HttpRelay, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import { deleteRedisPrefix, REDIS_URL, redisPrefix, waitFor } from './helpers/services.js';
import { spawnRedisServer } from './helpers/test-servers.js';

// One broken event hash in the Redis outbox fails alone, with its reason, and strands nothing (G1, G3): an event
// whose `d` is not JSON (written past storeInOutbox, or damaged), and an event whose hash is gone (evicted, a stray
// DEL). The healthy events, the broken event's own aggregate and the operator's views carry on. A Redis that may evict
// any key (maxmemory-policy allkeys-*) is refused at start: it could delete the outbox itself.

const API = '/api/v1/exactly-once';
const prefix = redisPrefix('redis_outbox_broken');
const outbox = {
  storage_type: 'redis',
  redis: { key_prefix: `${prefix}outbox:` },
  queue_pattern: `${prefix}{priority}`,
  poll_interval: '100ms',
  claim_timeout: '2s',
  publish_timeout: '1s',
};
const config = configFromObject({ outbox });
const keys = outboxKeys(config.outbox.redis.keyPrefix);
const low = `${prefix}low`;
let redis: Redis;
let relay: HttpRelay;
let configFile: string;

before(() => {
  redis = new Redis(REDIS_URL);
  configFile = writeConfigFile('redis-broken', {
    redis: { url: REDIS_URL },
    idempotency: { enabled: false },
    metrics: { collection_interval: 0 },
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

interface Listed {
  id: string;
  status: string;
  aggregate_id: string;
  last_error: string | null;
}

describe('broken event hashes', () => {
  test('an unparseable one and a deleted one fail alone with their reason; nothing else waits', async () => {
    const [garbled, afterGarbled] = (await write([
      { aggregateId: 'garbled', eventType: 'first', payload: {} },
      { aggregateId: 'garbled', eventType: 'second', payload: {} },
    ])) as [string, string];
    const [gone, afterGone] = (await write([
      { aggregateId: 'gone', eventType: 'first', payload: {} },
      { aggregateId: 'gone', eventType: 'second', payload: {} },
    ])) as [string, string];
    const healthy = await write(
      Array.from({ length: 200 }, (_, i) => ({ aggregateId: `ok-${i % 20}`, eventType: 'fine', payload: { i } })),
    );
    await redis.hset(keys.event(garbled), 'd', '{"ai": "garbled", not json');
    await redis.del(keys.event(gone));

    relay = await startHttpRelay(configFile);
    await waitFor(
      async () => (await redis.llen(low)) === healthy.length + 2,
      30_000,
      'the healthy events and both broken aggregates’ next events published',
    );
    const published = new Set((await redis.lrange(low, 0, -1)).map((j) => JSON.parse(j).id as string));
    for (const id of [...healthy, afterGarbled, afterGone]) assert.ok(published.has(id), id);
    assert.ok(!published.has(garbled) && !published.has(gone));

    // The operator sees both as failed, with why; the overview and readiness stay up.
    const failed = await relay.get(`${API}/outbox?status=failed`);
    assert.equal(failed.status, 200, failed.text);
    const events = (failed.json() as { events: Listed[] }).events;
    const byId = new Map(events.map((e) => [e.id, e]));
    assert.match(byId.get(garbled)?.last_error ?? '', /unreadable.*not JSON/);
    assert.equal(byId.get(garbled)?.aggregate_id, 'garbled');
    assert.match(byId.get(gone)?.last_error ?? '', /hash .*missing/);
    assert.equal(byId.get(gone)?.aggregate_id, 'gone');
    for (const path of ['/readyz', `${API}/overview`, `${API}/outbox/failed/groups`, `${API}/outbox/held`]) {
      const res = await relay.get(path);
      assert.equal(res.status, 200, `${path}: ${res.text}`);
    }
    const one = await relay.get(`${API}/outbox/events/${garbled}`);
    assert.equal(one.status, 200, one.text);

    // Replaying every failed event works; the broken ones fail again, alone, and nothing is stranded.
    const replay = await runCli(['outbox', 'retry', '--all-failed', '--config', configFile], {});
    assert.equal(replay.code, 0, showCli(replay));
    const [extra] = await write([{ aggregateId: 'garbled', eventType: 'third', payload: {} }]);
    await waitFor(
      async () => (await redis.lrange(low, 0, -1)).some((j) => JSON.parse(j).id === extra),
      10_000,
      'a later event of the replayed broken aggregate',
    );
    await waitFor(async () => (await redis.zcard(keys.failed)) === 2, 10_000, 'both broken events failed again');
    assert.equal(await redis.zcard(keys.pending), 0, 'nothing left pending');
  });
});

describe('a Redis that may evict any key', () => {
  test('maxmemory-policy allkeys-lru: the relay refuses to start, naming the policy', async () => {
    const lru = await spawnRedisServer(['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru']);
    try {
      const file = writeConfigFile('redis-allkeys', {
        redis: { url: lru.url },
        idempotency: { enabled: false },
        outbox: { storage_type: 'redis' },
      });
      const run = await runCli(['relay', '--config', file, '--port', '0', '--wait', '10s'], {});
      assert.equal(run.code, 1, showCli(run));
      assert.match(run.stderr, /maxmemory-policy allkeys-lru/, showCli(run));
      assert.match(run.stderr, /noeviction/, showCli(run));
      assert.match(run.stderr, /\[EO_[A-Z_]+\]$/m, showCli(run));
    } finally {
      await lru.stop();
    }
  });
});
