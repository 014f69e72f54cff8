import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { silentLogger } from '../src/logger.js';
import { Relay } from '../src/outbox/postgres/relay.js';
import type { Publisher } from '../src/outbox/types.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { RedisListPublisher } from '../src/publishers/redis-list.js';
import { createRedis } from '../src/redis.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { type RedisServer, startRedisServer, waitFor } from './helpers/services.js';

let fx: OutboxFixture;
let server: RedisServer;
before(async () => {
  fx = await outboxFixture('outage', { batch_size: 20, publish_timeout: '1s' });
  // Its own redis-server, persistent (AOF, fsync always), so killing it is an outage rather than data loss.
  server = await startRedisServer({ persistent: true });
});
after(async () => {
  await server.kill();
  await fx.close();
});

async function pendingCount(): Promise<number> {
  const { rows } = await fx.db.pool.query(
    "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status <> 'published'",
  );
  return rows[0].n;
}

test('Redis down for a few seconds mid-run: nothing lost, nothing duplicated, no retries burned', async () => {
  const redis = createRedis(server.url, silentLogger);
  const inner = new RedisListPublisher(redis, { queuePattern: fx.config.outbox.queuePattern, timeoutMs: 1000 });
  // Counts what the relay went through, so the test waits on it instead of sleeping through the outage.
  let publishFailures = 0;
  let publishSuccesses = 0;
  const counting: Publisher = {
    publish: async (events, options) => {
      try {
        const outcomes = await inner.publish(events, options);
        publishSuccesses++;
        return outcomes;
      } catch (err) {
        publishFailures++;
        throw err;
      }
    },
  };
  const relay = new Relay({ config: fx.config, pool: fx.db.pool, publisher: counting });
  await relay.start();
  const written: string[] = [];
  let writing = true;
  // Producers keep committing through the outage, as an application would.
  const producer = (async () => {
    let n = 0;
    while (writing) {
      const events = Array.from({ length: 10 }, (_, i) => ({
        aggregateId: `agg-${(n + i) % 7}`,
        eventType: 'e',
        payload: { n: n + i },
      }));
      const stored = await storeInOutboxStandalone(fx.db.pool, events);
      written.push(...stored.map((e) => e.id));
      n += 10;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    await waitFor(() => written.length >= 300, 10_000, 'events before the outage');
    await server.kill();
    const countAtOutage = written.length;
    const failuresAtOutage = publishFailures;
    // The outage lasts until the relay has failed a few batches against the dead server and producers have kept
    // committing through it, as an application would.
    await waitFor(
      () => publishFailures >= failuresAtOutage + 3 && written.length >= countAtOutage + 100,
      20_000,
      'failed publishes during the outage while producers keep committing',
    );
    await server.start();
    const countAtRestart = written.length;
    const successesAtRestart = publishSuccesses;
    // Producers go on after Redis is back, and the relay publishes again, before they stop.
    await waitFor(
      () => publishSuccesses > successesAtRestart && written.length >= countAtRestart + 50,
      20_000,
      'publishes and commits after Redis came back',
    );
    writing = false;
    await producer;
    await waitFor(async () => (await pendingCount()) === 0, 30_000, 'relay to catch up after Redis came back');
  } finally {
    writing = false;
    await producer;
    await relay.stop();
    redis.disconnect();
  }

  const reader = new Redis(server.url);
  const raw = (await reader.lrange(fx.lowQueue, 0, -1)).reverse();
  reader.disconnect();
  const ids = raw.map((j) => (JSON.parse(j) as { id: string }).id);
  assert.equal(new Set(ids).size, ids.length, 'no duplicates');
  assert.deepEqual(new Set(ids), new Set(written), 'every committed event arrived');
  const { rows } = await fx.db.pool.query('SELECT max(retry_count)::int AS m FROM exactly_once_outbox');
  assert.equal(rows[0].m, 0, 'an outage is not an event failure: retry counts untouched');
});

test('relay connections terminated by Postgres: the relay reconnects and carries on', async () => {
  await fx.redis.del(fx.lowQueue);
  const relay = fx.relay();
  await relay.start();
  try {
    await storeInOutboxStandalone(fx.db.pool, { aggregateId: 'pg-1', eventType: 'e', payload: 1 });
    await waitFor(async () => (await fx.redis.llen(fx.lowQueue)) === 1, 10_000, 'first event');
    // Kill every other backend of this database: the relay's LISTEN and claim connections.
    await fx.db.pool.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    await storeInOutboxStandalone(fx.db.pool, { aggregateId: 'pg-1', eventType: 'e', payload: 2 });
    await waitFor(async () => (await fx.redis.llen(fx.lowQueue)) === 2, 15_000, 'event after the terminations');
    const payloads = (await fx.jobs()).map((j) => j.payload);
    assert.deepEqual(payloads, [1, 2]);
  } finally {
    await relay.stop();
  }
});
