import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
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
    await fx.db.pool.query('TRUNCATE exactly_once_outbox');
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
