import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { configFromObject } from '../src/config/load-config.js';
import { DOORBELL_APPLICATION_NAME } from '../src/outbox/postgres/doorbell.js';
import { Relay } from '../src/outbox/postgres/relay.js';
import { storeInOutbox, storeInOutboxStandalone } from '../src/outbox/writer.js';
import { captureLogs, type LogCapture } from './helpers/log-capture.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { exitWithin, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { REDIS_URL, waitFor } from './helpers/services.js';

/**
 * Commit-to-Redis bound for a woken relay. `poll_interval` is 60 s in this file, so anything that waits for a poll
 * misses it by a minute; a relay that claims on NOTIFY or on a producer's end takes a few ms. The rest is headroom
 * for a loaded CI machine (250 ms was seen at load 28 on 2 cores): the bound separates "woken" from "polled", it is
 * not a speed target (those are in bench/freshness.ts).
 */
const PROMPT_MS = 1500;
const ASLEEP = 'caught up: sleeping until NOTIFY or poll_interval';

let fx: OutboxFixture;
let listener: pg.Client;
let notifications = 0;
let sentinels = 0;

before(async () => {
  fx = await outboxFixture('wakeup', { poll_interval: '60s', batch_size: 50 });
  listener = new pg.Client({ connectionString: fx.db.url });
  await listener.connect();
  listener.on('notification', (n) => {
    if (n.payload === 'sentinel') sentinels++;
    else notifications++;
  });
  await listener.query('LISTEN exactly_once_outbox');
});
after(async () => {
  await listener.end();
  await fx.close();
});

/**
 * NOTIFYs producers sent so far, exactly: Postgres delivers notifications in commit order, so once a sentinel sent
 * after those commits has arrived, every earlier one has too (no sleeping and hoping).
 */
async function notificationsSoFar(): Promise<number> {
  const want = sentinels + 1;
  await fx.db.pool.query("SELECT pg_notify('exactly_once_outbox', 'sentinel')");
  await waitFor(() => sentinels >= want, 5000, 'the sentinel notification');
  return notifications;
}

/** Relays of this database holding the watch lock (the watchman): at most one. */
async function watchmen(): Promise<number> {
  const { rows } = await fx.db.pool.query(`
    SELECT count(*)::int AS n FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = hashtext('exactly_once_outbox_watch')::oid AND objid = 0 AND objsubid = 2`);
  return rows[0].n;
}

/**
 * Milliseconds from `committedAt` until the event's job is in the list (not its dedup marker: the relay deletes that
 * once the batch is committed, often before a poll would see it).
 */
async function latencyOf(id: string, committedAt: number, deadlineMs: number): Promise<number> {
  const needle = `"id":${JSON.stringify(id)}`;
  for (;;) {
    // LPUSH puts the newest jobs at the head: the few most recent are enough, and cheap to read every 2 ms.
    if ((await fx.redis.lrange(fx.lowQueue, 0, 19)).some((job) => job.includes(needle))) {
      return performance.now() - committedAt;
    }
    if (performance.now() - committedAt > deadlineMs) return Number.POSITIVE_INFINITY;
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function assertPrompt(id: string, committedAt: number, what: string, bound = PROMPT_MS): Promise<void> {
  const ms = await latencyOf(id, committedAt, Math.max(3000, bound * 2));
  assert.ok(
    ms <= bound,
    `${what}: commit to Redis took ${ms === Number.POSITIVE_INFINITY ? '> 3 s' : `${Math.round(ms)} ms`}, bound ${bound} ms`,
  );
}

function loggedRelay(logs: LogCapture, outbox: Record<string, unknown> = {}): Relay {
  const config = configFromObject({
    database: { url: fx.db.url },
    redis: { url: REDIS_URL },
    outbox: { queue_pattern: fx.config.outbox.queuePattern, poll_interval: '60s', batch_size: 50, ...outbox },
  });
  return new Relay({ config, pool: fx.db.pool, publisher: fx.publisher(), logger: logs.logger });
}

/** Wait until the relay has gone to sleep after everything it could see (its last log line says so). */
async function asleep(logs: LogCapture): Promise<void> {
  await waitFor(() => logs.lines.at(-1)?.msg === ASLEEP, 10_000, 'the relay to go to sleep');
}

async function produce(n: number, aggregate: string): Promise<void> {
  for (let i = 0; i < n; i++)
    await storeInOutboxStandalone(fx.db.pool, { aggregateId: aggregate, eventType: 'e', payload: { i } });
}

async function inTransaction<T>(work: (c: pg.Client) => Promise<T>): Promise<{ client: pg.Client; result: T }> {
  const client = new pg.Client({ connectionString: fx.db.url });
  await client.connect();
  await client.query('BEGIN');
  return { client, result: await work(client) };
}

test('with no relay awake, every committing producer transaction rings the doorbell once', async () => {
  const before = await notificationsSoFar();
  await produce(10, 'quiet');
  // A batch of events in one transaction still rings once.
  await storeInOutboxStandalone(
    fx.db.pool,
    Array.from({ length: 100 }, (_, i) => ({ aggregateId: 'quiet', eventType: 'e', payload: { i } })),
  );
  assert.equal((await notificationsSoFar()) - before, 11);
  await fx.relay().publishDue();
});

test('an idle relay is woken by NOTIFY within milliseconds, again and again', async () => {
  const logs = captureLogs();
  const relay = loggedRelay(logs);
  await relay.start();
  try {
    for (let round = 0; round < 3; round++) {
      await asleep(logs);
      const stored = await storeInOutboxStandalone(fx.db.pool, {
        aggregateId: `idle-${round}`,
        eventType: 'e',
        payload: {},
      });
      await assertPrompt(stored.id, performance.now(), `round ${round}`);
    }
  } finally {
    await relay.stop();
  }
});

test('while a relay drains, producers commit without NOTIFY; once it is idle they ring again', async () => {
  await storeInOutboxStandalone(
    fx.db.pool,
    Array.from({ length: 20_000 }, (_, i) => ({ aggregateId: `backlog-${i % 100}`, eventType: 'e', payload: { i } })),
  );
  const relay = fx.relay({
    config: configFromObject({
      database: { url: fx.db.url },
      redis: { url: REDIS_URL },
      outbox: { queue_pattern: fx.config.outbox.queuePattern, poll_interval: '60s', batch_size: 20 },
    }),
  });
  await relay.start();
  try {
    await waitFor(async () => (await watchmen()) === 1, 10_000, 'relay to become the watchman');
    const before = await notificationsSoFar();
    await produce(30, 'during-drain');
    const pending = await fx.db.pool.query(
      "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'pending'",
    );
    assert.ok(pending.rows[0].n > 0, 'the relay was still draining while we produced');
    assert.equal(await watchmen(), 1);
    assert.equal((await notificationsSoFar()) - before, 0, 'no producer paid for a NOTIFY while a relay was awake');

    await waitFor(async () => (await watchmen()) === 0, 60_000, 'relay to finish and let go');
    const idle = await notificationsSoFar();
    // Three producers write while the relay is idle, then commit: each rings. (One after another, the first ring would
    // wake the relay and make it the watchman again, rightly silencing the next.)
    const open = await Promise.all(
      [0, 1, 2].map((i) =>
        inTransaction((c) => storeInOutbox(c, { aggregateId: 'after-drain', eventType: 'e', payload: { i } })),
      ),
    );
    for (const { client } of open) {
      await client.query('COMMIT');
      await client.end();
    }
    assert.equal((await notificationsSoFar()) - idle, 3, 'the doorbell rings again');
    await waitFor(
      async () => (await fx.db.pool.query("SELECT 1 FROM exactly_once_outbox WHERE status = 'pending'")).rowCount === 0,
      5000,
      'everything published',
    );
  } finally {
    await relay.stop();
  }
});

test('a producer that skipped the NOTIFY and commits 300 ms after the relay ran dry is claimed at once', async () => {
  await storeInOutboxStandalone(
    fx.db.pool,
    Array.from({ length: 2000 }, (_, i) => ({ aggregateId: `slow-backlog-${i % 50}`, eventType: 'e', payload: { i } })),
  );
  const logs = captureLogs();
  const relay = loggedRelay(logs);
  await relay.start();
  const { client } = await inTransaction(async () => undefined);
  try {
    await waitFor(async () => (await watchmen()) === 1, 10_000, 'relay to become the watchman');
    const before = await notificationsSoFar();
    const event = await storeInOutbox(client, { aggregateId: 'slow', eventType: 'e', payload: {} });
    assert.equal(await watchmen(), 1, 'the relay was still draining when the producer wrote its event');
    await waitFor(
      async () => (await fx.db.pool.query("SELECT 1 FROM exactly_once_outbox WHERE status = 'pending'")).rowCount === 0,
      30_000,
      'the relay to run dry',
    );
    // The app's transaction goes on with other work (not synchronisation: the scenario under test).
    await new Promise((r) => setTimeout(r, 300));
    await client.query('COMMIT');
    await assertPrompt(event.id, performance.now(), 'slow producer');
    assert.equal((await notificationsSoFar()) - before, 0, 'the producer skipped the NOTIFY (the case under test)');
  } finally {
    await client.end();
    await relay.stop();
  }
});

test('a producer inside the trigger cannot silence another: B rings although A holds the probe locks and rolls back', async () => {
  const logs = captureLogs();
  const relay = loggedRelay(logs);
  await relay.start();
  // A writes an event and, as if paused inside the trigger, holds the locks a trigger holds while it decides:
  // 0004's exclusive probe of the awake lock and 0005's shared probe of the watch lock (plus its producer lock).
  const { client: a } = await inTransaction(async (c) => {
    await storeInOutbox(c, { aggregateId: 'rolled-back', eventType: 'e', payload: {} });
    await c.query("SELECT pg_advisory_lock(hashtext('exactly_once_outbox_awake'), 0)");
    await c.query("SELECT pg_advisory_lock_shared(hashtext('exactly_once_outbox_watch'), 0)");
  });
  try {
    await asleep(logs);
    const before = await notificationsSoFar();
    const b = await storeInOutboxStandalone(fx.db.pool, { aggregateId: 'competing', eventType: 'e', payload: {} });
    const committedAt = performance.now();
    await a.query('ROLLBACK');
    await a.query('SELECT pg_advisory_unlock_all()');
    await assertPrompt(b.id, committedAt, 'competing producer');
    assert.equal((await notificationsSoFar()) - before, 1, 'B rang the bell');
    const rolledBack = await fx.db.pool.query("SELECT 1 FROM exactly_once_outbox WHERE aggregate_id = 'rolled-back'");
    assert.equal(rolledBack.rowCount, 0);
    assert.ok(
      !(await fx.jobs()).some((j) => j.aggregate_id === 'rolled-back'),
      'a rolled-back event is never published',
    );
  } finally {
    await a.end();
    await relay.stop();
  }
});

test('an open producer transaction crossing a later commit: both arrive promptly, per-aggregate order kept', async () => {
  await fx.redis.del(fx.lowQueue);
  const logs = captureLogs();
  const relay = loggedRelay(logs);
  await relay.start();
  await asleep(logs);
  // A writes first (lower seq) and commits last; B commits in between.
  const { client: a, result: a0 } = await inTransaction((c) =>
    storeInOutbox(c, { aggregateId: 'cross-a', eventType: 'e', payload: { n: 0 } }),
  );
  try {
    const b = await inTransaction((c) =>
      storeInOutbox(c, { aggregateId: 'cross-b', eventType: 'e', payload: { n: 0 } }),
    );
    await b.client.query('COMMIT');
    await assertPrompt(b.result.id, performance.now(), 'B, committed while A is open');
    await b.client.end();
    // A goes on: a second event of its own aggregate and one of B's, written after B's commit.
    const a1 = await storeInOutbox(a, [
      { aggregateId: 'cross-a', eventType: 'e', payload: { n: 1 } },
      { aggregateId: 'cross-b', eventType: 'e', payload: { n: 1 } },
    ]);
    await a.query('COMMIT');
    const committedAt = performance.now();
    for (const e of [a0, ...a1]) await assertPrompt(e.id, committedAt, `A's event ${e.aggregateId}`);
  } finally {
    await a.end();
    await relay.stop();
  }
  const byAggregate = new Map<string, number[]>();
  for (const j of await fx.jobs()) {
    const list = byAggregate.get(j.aggregate_id as string) ?? [];
    list.push((j.payload as { n: number }).n);
    byAggregate.set(j.aggregate_id as string, list);
  }
  assert.deepEqual(Object.fromEntries(byAggregate), { 'cross-a': [0, 1], 'cross-b': [0, 1] });
});

test('a relay process whose LISTEN connection is terminated reconnects: events still arrive within 2 s', async () => {
  const file = writeConfigFile('wakeup-listen', {
    database: { url: fx.db.url },
    redis: { url: REDIS_URL },
    outbox: { queue_pattern: fx.config.outbox.queuePattern, poll_interval: '60s' },
  });
  const relay = spawnRelay(file, [], { LOG_LEVEL: 'debug' });
  const doorbellPid = async () => {
    const { rows } = await fx.db.pool.query(
      `SELECT pid FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = $1
         AND (query = 'LISTEN exactly_once_outbox' OR query LIKE '%exactly_once_outbox_watch%')`,
      [DOORBELL_APPLICATION_NAME],
    );
    return rows[0]?.pid as number | undefined;
  };
  /** The relay component's last log line says it is asleep (pino writes whole lines, in order). */
  const sleeping = () => {
    const lines = relay.stderr().split('\n');
    lines.pop(); // a line still being written
    const relayLines = lines.filter((l) => l.includes('"component":"relay"'));
    return relayLines.at(-1)?.includes(`"msg":"${ASLEEP}"`) === true;
  };
  try {
    await waitFor(
      async () => (await doorbellPid()) !== undefined && sleeping(),
      20_000,
      'the relay to listen and sleep',
    );
    const first = await doorbellPid();
    await fx.db.pool.query('SELECT pg_terminate_backend($1)', [first]);
    // Committed while the relay has no LISTEN connection: the reconnect must pick it up.
    const during = await storeInOutboxStandalone(fx.db.pool, {
      aggregateId: 'listen',
      eventType: 'e',
      payload: { n: 0 },
    });
    await assertPrompt(during.id, performance.now(), 'event committed during the reconnect', 2000);

    // Asleep again with a 60 s poll, on a new LISTEN connection: only a NOTIFY there can wake it.
    await waitFor(
      async () => ![undefined, first].includes(await doorbellPid()) && sleeping(),
      10_000,
      'a new LISTEN connection and the relay asleep',
    );
    const afterwards = await storeInOutboxStandalone(fx.db.pool, {
      aggregateId: 'listen',
      eventType: 'e',
      payload: { n: 1 },
    });
    await assertPrompt(afterwards.id, performance.now(), 'event after the reconnect', 2000);
  } finally {
    relay.child.kill('SIGTERM');
    await exitWithin(relay, 20_000);
  }
});
