import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { configFromObject } from '../src/config/load-config.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { REDIS_URL, waitFor } from './helpers/services.js';

let fx: OutboxFixture;
let listener: pg.Client;
let notifications = 0;

before(async () => {
  // Polling so slow that only a NOTIFY can explain a prompt delivery.
  fx = await outboxFixture('wakeup', { poll_interval: '60s', batch_size: 50 });
  listener = new pg.Client({ connectionString: fx.db.url });
  await listener.connect();
  listener.on('notification', () => {
    notifications++;
  });
  await listener.query('LISTEN exactly_once_outbox');
});
after(async () => {
  await listener.end();
  await fx.close();
});

/** Relays of this test's database holding the "awake" lock (shared); advisory locks are per database. */
async function awakeHolders(): Promise<number> {
  const { rows } = await fx.db.pool.query(`
    SELECT count(*)::int AS n FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND mode = 'ShareLock'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = hashtext('exactly_once_outbox_awake')::oid AND objid = 0 AND objsubid = 2`);
  return rows[0].n;
}

async function produce(n: number, aggregate: string): Promise<void> {
  for (let i = 0; i < n; i++)
    await storeInOutbox(fx.db.pool, { aggregateId: aggregate, eventType: 'e', payload: { i } });
}

test('with no relay awake, every committing producer transaction rings the doorbell once', async () => {
  const before = notifications;
  await produce(10, 'quiet');
  // A batch of events in one transaction still rings once.
  await storeInOutbox(
    fx.db.pool,
    Array.from({ length: 100 }, (_, i) => ({ aggregateId: 'quiet', eventType: 'e', payload: { i } })),
  );
  await waitFor(() => notifications - before >= 11, 2000, 'notifications');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(notifications - before, 11);
  await fx.relay().publishDue();
});

test('an idle relay is woken by NOTIFY within milliseconds, again and again', async () => {
  const relay = fx.relay();
  await relay.start();
  try {
    for (let round = 0; round < 3; round++) {
      // Past the grace polls: the relay is asleep until NOTIFY (or a 60 s poll).
      await waitFor(async () => (await awakeHolders()) === 0, 5000, 'relay to go idle');
      await new Promise((r) => setTimeout(r, 150));
      const stored = await storeInOutbox(fx.db.pool, { aggregateId: `idle-${round}`, eventType: 'e', payload: {} });
      const started = performance.now();
      await waitFor(async () => (await fx.jobs()).some((j) => j.id === stored.id), 2000, `event of round ${round}`);
      assert.ok(performance.now() - started < 2000);
    }
  } finally {
    await relay.stop();
  }
});

test('while a relay drains, producers commit without NOTIFY; once it is idle they ring again', async () => {
  await storeInOutbox(
    fx.db.pool,
    Array.from({ length: 20_000 }, (_, i) => ({ aggregateId: `backlog-${i % 100}`, eventType: 'e', payload: { i } })),
  );
  const config = configFromObject({
    database: { url: fx.db.url },
    redis: { url: REDIS_URL },
    outbox: { queue_pattern: fx.config.outbox.queuePattern, poll_interval: '60s', batch_size: 20 },
  });
  const relay = fx.relay({ config });
  await relay.start();
  try {
    await waitFor(async () => (await awakeHolders()) === 1, 10_000, 'relay to hold the awake lock');
    const before = notifications;
    await produce(30, 'during-drain');
    const pending = await fx.db.pool.query(
      "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'pending'",
    );
    assert.ok(pending.rows[0].n > 0, 'the relay was still draining while we produced');
    assert.equal(await awakeHolders(), 1);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(notifications - before, 0, 'no producer paid for a NOTIFY while a relay was awake');

    await waitFor(async () => (await awakeHolders()) === 0, 60_000, 'relay to finish and let go');
    const idle = notifications;
    await produce(3, 'after-drain');
    await waitFor(() => notifications - idle === 3, 2000, 'doorbell rings again');
    await waitFor(
      async () => (await fx.db.pool.query("SELECT 1 FROM exactly_once_outbox WHERE status = 'pending'")).rowCount === 0,
      5000,
      'everything published',
    );
  } finally {
    await relay.stop();
  }
});
