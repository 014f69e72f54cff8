import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { Relay } from '../src/outbox/postgres/relay.js';
import type { Publisher } from '../src/outbox/types.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { exitWithin, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { createTestDatabase, REDIS_URL, type TestDatabase, waitFor } from './helpers/services.js';

let fx: OutboxFixture;
let bare: TestDatabase;
before(async () => {
  fx = await outboxFixture('shutdown', { batch_size: 20 });
  bare = await createTestDatabase('unmigrated', { migrate: false });
});
after(async () => {
  await fx.close();
  await bare.close();
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal} mid-drain: the relay finishes its batch and exits 0 within seconds; nothing lost or doubled`, async () => {
    await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
    await fx.redis.del(fx.lowQueue);
    const total = 3000;
    await storeInOutboxStandalone(
      fx.db.pool,
      Array.from({ length: total }, (_, n) => ({ aggregateId: `s${n % 50}`, eventType: 'e', payload: { n } })),
    );
    const file = writeConfigFile('shutdown', {
      database: { url: fx.db.url },
      redis: { url: REDIS_URL },
      outbox: { queue_pattern: fx.config.outbox.queuePattern, batch_size: 20 },
    });
    const relay = spawnRelay(file);
    await waitFor(async () => (await fx.redis.llen(fx.lowQueue)) > 0, 20_000, 'relay to start publishing');
    const sent = performance.now();
    relay.child.kill(signal);
    const { code } = await exitWithin(relay, 20_000);
    const tookMs = performance.now() - sent;
    assert.equal(code, 0, `exit code (output: ${relay.stderr()})`);
    // Idle it takes well under a second; the bound leaves room for a loaded CI machine, below the 10 s forced exit.
    assert.ok(tookMs < 8000, `exited in ${tookMs} ms`);

    // What it pushed is marked; nothing is half-done: pushed == published rows.
    const pushed = await fx.redis.llen(fx.lowQueue);
    const { rows } = await fx.db.pool.query(
      "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'published'",
    );
    assert.equal(rows[0].n, pushed);
    assert.ok(pushed < total, 'stopped mid-drain');

    const again = spawnRelay(file);
    await waitFor(async () => (await fx.redis.llen(fx.lowQueue)) === total, 30_000, 'the rest after restart');
    again.child.kill('SIGTERM');
    assert.equal((await exitWithin(again, 20_000)).code, 0);
    const jobs = await fx.jobs();
    assert.equal(new Set(jobs.map((j) => j.id)).size, total);
  });
}

test('relay.stop() returns only once the batch in flight is committed', async () => {
  // A caller closes its pool and Redis client as soon as stop() returns (the CLI does): a stop() that returned while
  // a batch was still between its push and its COMMIT would leave that batch to die with the connections.
  await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
  await fx.redis.del(fx.lowQueue);
  const batch = fx.config.outbox.batchSize;
  await storeInOutboxStandalone(
    fx.db.pool,
    Array.from({ length: batch }, (_, n) => ({ aggregateId: `stop${n}`, eventType: 'e', payload: { n } })),
  );
  let committed = 0;
  const metrics = {
    outboxBatch: () => void committed++, // called after the batch's COMMIT
    outboxPublished: () => {},
    outboxFailed: () => {},
    redisRoundTrip: () => {},
  };
  // The real publisher, held at the door until the test opens it: the batch is claimed and in flight meanwhile.
  const real = fx.publisher();
  let entered = false;
  let open = () => {};
  const door = new Promise<void>((resolve) => {
    open = resolve;
  });
  const gated: Publisher = {
    async publish(events, options) {
      entered = true;
      await door;
      return real.publish(events, options);
    },
  };
  const relay = new Relay({ config: fx.config, pool: fx.db.pool, publisher: gated, metrics });
  await relay.start();
  await waitFor(() => entered, 20_000, 'the relay to claim a batch and start its push');

  let committedWhenStopped = -1;
  const stopped = relay.stop().then(() => {
    committedWhenStopped = committed;
  });
  // The push goes ahead once stop() has returned, or after 2 s at most: a correct stop() cannot return before the
  // push it waits for, so it always takes the 2 s; one that does not wait returns at once and is caught below.
  void Promise.race([stopped, delay(2_000)]).then(open);
  let deadline: NodeJS.Timeout | undefined;
  await Promise.race([
    stopped,
    new Promise((_, reject) => {
      deadline = setTimeout(() => reject(new Error('relay.stop() did not return within 20 s')), 20_000);
    }),
  ]).finally(() => clearTimeout(deadline));

  assert.equal(committedWhenStopped, 1, 'the batch in flight was committed before stop() returned');
  const { rows } = await fx.db.pool.query(
    "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'published'",
  );
  assert.equal(rows[0].n, batch, 'every claimed event is marked published once stop() returned');
  assert.equal(await fx.redis.llen(fx.lowQueue), batch);
});

test('a relay pointed at an unmigrated database exits 1 and says to run migrate', async () => {
  const file = writeConfigFile('unmigrated', { database: { url: bare.url }, redis: { url: REDIS_URL } });
  const relay = spawnRelay(file);
  const { code } = await exitWithin(relay, 30_000);
  assert.equal(code, 1);
  assert.match(relay.stderr(), /exactly-once migrate/);
});

test('a relay with a bad config file exits 1 naming the key and the file', async () => {
  const file = writeConfigFile('badcfg', { outbox: { batch_size: 0 } });
  const relay = spawnRelay(file);
  const { code } = await exitWithin(relay, 30_000);
  assert.equal(code, 1);
  assert.match(relay.stderr(), /exactly_once\.outbox\.batch_size/);
  assert.ok(relay.stderr().includes(file));
});
