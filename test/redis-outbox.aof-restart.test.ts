import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { RedisOutboxInspector } from '../src/outbox/redis/inspector.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { type RedisServer, startRedisServer, waitFor } from './helpers/services.js';

// G1 + G2 with the outbox in Redis: the Redis that holds the outbox and the destination list is SIGKILLed mid-drain and
// restarted from its AOF (appendfsync always). The move script's push and mark reach the AOF as one MULTI/EXEC block,
// so after the restart each event is either on the list and published, or pending and pushed later: never lost, never
// doubled. Relays ride out the outage and carry on.

const EVENTS = 4000;
const AGGREGATES = 40;
const list = 'eo-aof:jobs';
const outbox = {
  storage_type: 'redis',
  redis: { key_prefix: 'eo-aof:{outbox}:' },
  queue_pattern: list,
  batch_size: 10,
  poll_interval: '50ms',
  claim_timeout: '2s',
  publish_timeout: '1s',
  circuit_breaker: { open_for: '200ms' },
};
let server: RedisServer;
let redis: Redis;

before(async () => {
  server = await startRedisServer({ persistent: true });
  redis = new Redis(server.url, { maxRetriesPerRequest: 20 });
  redis.on('error', () => {});
});
after(async () => {
  redis.disconnect();
  await server.kill();
});

test('Redis (AOF, appendfsync always) SIGKILLed and restarted mid-drain: nothing lost, nothing doubled', async (t) => {
  const config = configFromObject({ outbox });
  const inspector = new RedisOutboxInspector(redis, config.outbox);
  // No Postgres: the outbox is in Redis and idempotency is off. The relays start once every event is written, so the
  // restart below comes mid-drain however fast they drain.
  const configFile = writeConfigFile('redis-aof', {
    redis: { url: server.url },
    idempotency: { enabled: false },
    outbox,
  });
  const relays: RelayProcess[] = [];
  try {
    for (let start = 0; start < EVENTS; start += 200) {
      const events: NewOutboxEvent[] = [];
      for (let i = start; i < start + 200; i++) {
        events.push({
          aggregateId: `a${i % AGGREGATES}`,
          eventType: 'tick',
          payload: { n: Math.floor(i / AGGREGATES) },
        });
      }
      const multi = redis.multi();
      await storeInOutbox(multi, events, config.outbox);
      await multi.exec();
    }
    relays.push(spawnRelay(configFile), spawnRelay(configFile));
    // Polled back to back, not every 25 ms as waitFor does: two relays move thousands of events in 25 ms on an idle
    // machine, and the kill must land mid-drain.
    const deadline = Date.now() + 60_000;
    let beforeKill = await redis.llen(list);
    while (beforeKill < EVENTS / 10) {
      if (Date.now() > deadline) throw new Error(`the relays did not drain within 60 s:\n${relays[0]?.stderr()}`);
      beforeKill = await redis.llen(list);
    }
    await server.kill();
    // Judged on the count read just before the SIGKILL: after the restart the relays, which reconnect faster than
    // this client, may finish the drain before its first reply (4000 of 4000 once, on a quick machine).
    assert.ok(beforeKill < EVENTS, `the kill came mid-drain (${beforeKill} of ${EVENTS} on the list)`);
    await server.start();
    t.diagnostic(
      `killed with ${beforeKill} of ${EVENTS} on the list; ${await redis.llen(list)} right after the restart`,
    );
    await waitFor(async () => (await inspector.backlog()).pending === 0, 60_000, 'every event published');
  } finally {
    for (const r of relays) r.child.kill('SIGKILL');
    await Promise.all(relays.map((r) => exitWithin(r, 10_000)));
  }
  const jobs = (await redis.lrange(list, 0, -1)).reverse().map((j) => JSON.parse(j));
  assert.equal(new Set(jobs.map((j) => j.id)).size, EVENTS, 'every event on the list');
  assert.equal(jobs.length, EVENTS, 'none twice');
  const next = new Map<string, number>();
  for (const j of jobs) {
    assert.equal(j.payload.n, next.get(j.aggregate_id) ?? 0, `aggregate ${j.aggregate_id} in order`);
    next.set(j.aggregate_id, j.payload.n + 1);
  }
  const published = await inspector.list({ status: 'published', limit: 1 });
  assert.equal(published.events.length, 1);
  assert.equal((await inspector.backlog()).failed, 0);
});
