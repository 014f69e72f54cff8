import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { RedisOutboxInspector } from '../src/outbox/redis/inspector.js';
import { outboxKeys } from '../src/outbox/redis/keys.js';
import { RedisOutboxRelay } from '../src/outbox/redis/relay.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { spawnRedisServer, type TestRedis } from './helpers/test-servers.js';

// Replaying the failed events of one aggregate (in write order, G3) costs Redis work in proportion to the events
// replayed, not to the square of the aggregate's length: every replay script runs in one go and blocks every other
// client while it does. Counted in commands the scripts run (INFO commandstats, on a server of the test's own), not in
// milliseconds.

const FAILED = 2000;
const PENDING = 500;
/** Commands per replayed event the replay may run, with room to spare (the quadratic replay ran ~1,000). */
const PER_EVENT = 40;
const config = configFromObject({
  outbox: { storage_type: 'redis', batch_size: 1, max_retries: 0, allowed_queues: ['broken'] },
});
const keys = outboxKeys(config.outbox.redis.keyPrefix);
let server: TestRedis;
let redis: Redis;

before(async () => {
  server = await spawnRedisServer();
  redis = new Redis(server.url);
});
after(async () => {
  redis?.disconnect();
  await server?.stop();
});

/** Commands the server ran since the last RESETSTAT, but those the test itself sends. */
async function scriptCommands(): Promise<number> {
  const own = /^(eval|evalsha|info|config|zrangebyscore|hmget|script)$/;
  let calls = 0;
  for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) {
    if (!own.test(m[1] as string)) calls += Number(m[2]);
  }
  return calls;
}

test(`replaying ${FAILED} failed events of one aggregate, ${PENDING} pending behind them: linear, in order`, async (t) => {
  await redis.set('broken', 'not a list'); // WRONGTYPE: each event fails at its first attempt (max_retries 0)
  const multi = redis.multi();
  await storeInOutbox(
    multi,
    Array.from({ length: FAILED + PENDING }, (_, i) => ({
      aggregateId: 'A',
      eventType: i < FAILED ? 'dead' : 'waiting',
      payload: { i },
      queue: 'broken',
    })),
    config.outbox,
  );
  await multi.exec();
  const relay = new RedisOutboxRelay({ config, redis });
  for (let i = 0; i < FAILED; i++) await relay.runBatch(); // batch_size 1: each run fails the head
  const inspector = new RedisOutboxInspector(redis, config.outbox);
  assert.deepEqual([(await inspector.backlog()).failed, (await inspector.backlog()).pending], [FAILED, PENDING]);

  await redis.config('RESETSTAT');
  assert.deepEqual(await inspector.retry({ allFailed: true }), { retried: FAILED });
  const commands = await scriptCommands();
  t.diagnostic(`${commands} commands run by the replay scripts`);
  assert.ok(commands <= PER_EVENT * FAILED, `${commands} commands for ${FAILED} replayed events`);

  // Every event is pending again, in write order: the replayed ones first, then the ones that waited behind them.
  const list = await redis.lrange(keys.aggregateList('\u0000A'), 0, -1);
  assert.equal(list.length, FAILED + PENDING);
  const types = await Promise.all(
    list.map(async (id) => JSON.parse((await redis.hget(keys.event(id), 'd')) as string).p.i as number),
  );
  assert.deepEqual(
    types,
    Array.from({ length: FAILED + PENDING }, (_, i) => i),
  );
  assert.deepEqual([(await inspector.backlog()).failed, (await inspector.backlog()).pending], [0, FAILED + PENDING]);
});

test('replays in any order and any split keep every aggregate list in write order', async () => {
  const prefix = 'mixed:';
  const mixed = configFromObject({
    outbox: {
      storage_type: 'redis',
      redis: { key_prefix: `${prefix}{outbox}:` },
      batch_size: 1,
      max_retries: 0,
      allowed_queues: ['broken'],
    },
  });
  const k = outboxKeys(mixed.outbox.redis.keyPrefix);
  const multi = redis.multi();
  const stored = await storeInOutbox(
    multi,
    Array.from({ length: 80 }, (_, i) => ({
      aggregateId: `B${i % 2}`,
      eventType: 'e',
      payload: { i },
      queue: 'broken',
    })),
    mixed.outbox,
  );
  await multi.exec();
  const relay = new RedisOutboxRelay({ config: mixed, redis });
  // Fail the first 30 of each aggregate; the last 10 of each stay pending behind them.
  for (let i = 0; i < 60; i++) await relay.runBatch();
  const inspector = new RedisOutboxInspector(redis, mixed.outbox);
  let failed = stored.filter((e) => (e.payload as { i: number }).i < 60).map((e) => e.id);
  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  while (failed.length > 0) {
    const pick = failed.filter(() => random() < 0.35);
    const chosen = pick.length > 0 ? pick : failed.slice(0, 1);
    assert.equal((await inspector.retry({ ids: chosen })).retried, chosen.length);
    failed = failed.filter((id) => !chosen.includes(id));
    for (const agg of ['B0', 'B1']) {
      const list = await redis.lrange(k.aggregateList(`\u0000${agg}`), 0, -1);
      const seqs = await Promise.all(list.map((id) => redis.hget(k.event(id), 'q')));
      assert.ok(
        seqs.every((q, i) => i === 0 || Number(q) > Number(seqs[i - 1])),
        `${agg} out of order after replaying ${chosen.length}: ${seqs.join(',')}`,
      );
      assert.equal(
        list.length,
        80 / 2 - failed.filter((id) => stored.find((e) => e.id === id)?.aggregateId === agg).length,
      );
    }
  }
});
