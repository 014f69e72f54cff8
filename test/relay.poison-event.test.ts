import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { configFromObject } from '../src/config/load-config.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { eventStates, insertRawEvents } from './helpers/raw-events.js';
import { spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { REDIS_URL, waitFor } from './helpers/services.js';

let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('poison', {
    max_retries: 3,
    allowed_queues: ['eot:*'], // the test's own keys (prefixes are `eot:<label>:<random>:`), for the relay's check
    poll_interval: '5s', // retries must be driven by their schedule, not by polling
    retry_backoff: { initial_delay: '150ms', max_delay: '10s', multiplier: 2, jitter: false },
  });
  // Test-only: when each failed attempt's transaction began (database clock). A retry is due `delay` after the
  // attempt before it began (next_attempt_at = now() + delay), so gaps between these are exact; a poll's view of
  // the row would add the batch's duration and the poll's lag (both stretch on a loaded machine). A failed event is
  // parked (its first failure inserts the parked row, each later one updates it).
  await fx.db.pool.query(`
    CREATE TABLE poison_attempts (id uuid, attempt int, began_at timestamptz);
    CREATE FUNCTION poison_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO poison_attempts VALUES (NEW.id, NEW.retry_count, now()); RETURN NEW; END $$;
    CREATE TRIGGER poison_first AFTER INSERT ON exactly_once_outbox_parked
      FOR EACH ROW WHEN (NEW.retry_count > 0) EXECUTE FUNCTION poison_attempt();
    CREATE TRIGGER poison_again AFTER UPDATE OF retry_count ON exactly_once_outbox_parked
      FOR EACH ROW WHEN (NEW.retry_count > OLD.retry_count) EXECUTE FUNCTION poison_attempt();`);
});
after(async () => {
  await fx.close();
});

test('a poison event is retried with growing delays, ends failed, and holds back only its own aggregate', async () => {
  // Its destination is a string key, so every LPUSH fails with WRONGTYPE.
  const poisonQueue = `${fx.prefix}not-a-list`;
  await fx.redis.set(poisonQueue, 'occupied');
  const relay = fx.relay();
  await relay.start();
  try {
    // Written by plain SQL: the relay must cope with whatever a row names.
    const [poison, behindPoison] = (await insertRawEvents(fx.db.pool, [
      { aggregateId: 'sick', queue: poisonQueue },
      { aggregateId: 'sick' },
    ])) as [string, string];

    // Record how far ahead (database clock) the relay scheduled each retry.
    const scheduledAhead: number[] = [];
    let last = 0;
    let status = 'pending';
    let healthyDelivered = false;
    // Four attempts 150 + 300 + 600 ms apart; the deadline only stops a broken relay from hanging the suite.
    const deadline = Date.now() + 20_000;
    while (status === 'pending') {
      if (Date.now() > deadline) assert.fail(`poison event still pending after 20 s (${last} attempts seen)`);
      const { rows } = await fx.db.pool.query(
        `SELECT retry_count, status, extract(epoch FROM next_attempt_at - clock_timestamp()) * 1000 AS ahead_ms
         FROM exactly_once_outbox WHERE id = $1`,
        [poison],
      );
      const row = rows[0];
      status = row.status;
      if (row.retry_count > last) {
        if (row.status === 'pending') scheduledAhead.push(Number(row.ahead_ms));
        last = row.retry_count;
        if (last === 1) {
          // While the poison event waits for its retries, other aggregates keep flowing...
          const healthy = await storeInOutboxStandalone(fx.db.pool, {
            aggregateId: 'well',
            eventType: 'ok',
            payload: {},
          });
          await waitFor(async () => (await fx.jobs()).some((j) => j.id === healthy.id), 3000, 'healthy event');
          healthyDelivered = true;
          // ...but the event written after the poison one, on its aggregate, does not overtake it.
          assert.ok(!(await fx.jobs()).some((j) => j.id === behindPoison), 'held behind the failing event');
        }
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(healthyDelivered);
    const { rows } = await fx.db.pool.query('SELECT * FROM exactly_once_outbox WHERE id = $1', [poison]);
    assert.equal(rows[0].status, 'failed');
    assert.equal(rows[0].retry_count, 4, 'first attempt + max_retries (3) retries');
    assert.match(rows[0].last_error, /WRONGTYPE/);
    const { rows: began } = await fx.db.pool.query<{ attempt: number; ms: number }>(
      'SELECT attempt, extract(epoch FROM began_at) * 1000 AS ms FROM poison_attempts WHERE id = $1 ORDER BY attempt',
      [poison],
    );
    assert.deepEqual(
      began.map((a) => a.attempt),
      [1, 2, 3, 4],
    );
    // Scheduled delays 150, 300, 600 ms (no jitter): no retry ever comes early...
    [150, 300, 600].forEach((delay, i) => {
      const gap = Number(began[i + 1]?.ms) - Number(began[i]?.ms);
      assert.ok(gap >= delay, `attempt ${i + 2} began ${gap} ms after attempt ${i + 1}, expected >= ${delay} ms`);
    });
    // ...and each is scheduled further ahead than the one before. (Read from the row rather than from wall-clock gaps,
    // which a loaded CI machine can stretch.)
    assert.equal(scheduledAhead.length, 3);
    [150, 300, 600].forEach((delay, i) => {
      assert.ok((scheduledAhead[i] as number) <= delay + 5, `retry ${i + 1} scheduled ${scheduledAhead[i]} ms ahead`);
    });
    assert.ok(
      (scheduledAhead[1] as number) > (scheduledAhead[0] as number) &&
        (scheduledAhead[2] as number) > (scheduledAhead[1] as number),
      `growing: ${scheduledAhead}`,
    );

    // Once the poison event is dead, its aggregate flows again (the dead event stays for replay).
    await waitFor(async () => (await fx.jobs()).some((j) => j.id === behindPoison), 7000, 'event behind poison');
    assert.equal(await fx.redis.get(poisonQueue), 'occupied', 'the poison destination was never touched');
  } finally {
    await relay.stop();
  }
});

/** `promise`, or a rejection naming `what` once `ms` pass. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

test('a spawned relay: events that fail deterministically end failed, alone; every other aggregate flows', async () => {
  // A clean slate: the list must end up holding exactly this test's jobs.
  await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
  await fx.redis.del(fx.lowQueue);
  const notAList = `${fx.prefix}spawned-not-a-list`;
  await fx.redis.set(notAList, 'occupied');
  // All written before the relay starts, so the first batch holds good and bad events together.
  const ids = await insertRawEvents(fx.db.pool, [
    { aggregateId: 'g1' },
    { aggregateId: 'sick', queue: notAList }, // WRONGTYPE
    { aggregateId: 'sick' }, // behind it
    { aggregateId: 'timeless', createdAt: 'infinity' }, // no RFC 3339 creation_time: the job cannot be built
    { aggregateId: 'huge', payload: JSON.stringify({ blob: 'x'.repeat(5000) }) }, // above max_job_bytes
    { aggregateId: 'g2' },
  ]);
  const [g1, wrongType, behind, unbuildable, oversized, g2] = ids as [string, string, string, string, string, string];
  const file = writeConfigFile('poison-spawned', {
    database: { url: fx.db.url },
    redis: { url: REDIS_URL },
    outbox: {
      queue_pattern: fx.config.outbox.queuePattern,
      poll_interval: '200ms',
      allowed_queues: ['eot:*'],
      max_retries: 2,
      max_job_bytes: 4096,
      retry_backoff: { initial_delay: '100ms', jitter: false },
    },
    metrics: { enabled: false },
  });
  const relay = spawnRelay(file);
  try {
    const bad = [wrongType, unbuildable, oversized];
    await waitFor(
      async () => {
        const states = await eventStates(fx.db.pool, ids);
        return bad.every((id) => states.get(id)?.status === 'failed') && states.get(behind)?.status === 'published';
      },
      30_000,
      `the bad events to end failed and the one behind them to go out (relay output: ${relay.stderr().slice(-500)})`,
    );
    const states = await eventStates(fx.db.pool, ids);
    for (const id of bad) assert.equal(states.get(id)?.retryCount, 3, 'first attempt + max_retries (2)');
    assert.match(states.get(wrongType)?.lastError ?? '', /^WRONGTYPE/);
    assert.match(states.get(unbuildable)?.lastError ?? '', /created_at/);
    assert.match(states.get(oversized)?.lastError ?? '', /max_job_bytes/);
    assert.equal(states.get(g1)?.status, 'published');
    assert.equal(states.get(g2)?.status, 'published');
    // Both went out before the event behind the failing one: in the first batch, next to the failing events (in
    // lane order: aggregates of different lanes have no order between them).
    const jobs = (await fx.jobs()).map((j) => j.id);
    assert.deepEqual(new Set(jobs.slice(0, 2)), new Set([g1, g2]));
    assert.deepEqual(jobs.slice(2), [behind]);
    assert.doesNotMatch(relay.stderr(), /relay batch failed/, 'no batch was treated as an outage');
    assert.equal(await fx.redis.get(notAList), 'occupied');
  } finally {
    relay.child.kill('SIGTERM');
    const { code } = await within(relay.exited, 15_000, 'the relay to exit after SIGTERM');
    assert.equal(code, 0, relay.stderr());
  }
});

test('a failing aggregate with a batch-sized backlog behind it does not starve the aggregates written after it', async () => {
  await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
  await fx.redis.del(fx.lowQueue);
  const poisonQueue = `${fx.prefix}backlog-not-a-list`;
  await fx.redis.set(poisonQueue, 'occupied');
  const batchSize = 5;
  // The failed event's retry is far off, so nothing but the claim's skipping of its held-back backlog lets the
  // healthy event through meanwhile.
  const config = configFromObject({
    database: { url: fx.db.url },
    redis: { url: REDIS_URL },
    outbox: {
      queue_pattern: fx.config.outbox.queuePattern,
      allowed_queues: ['eot:*'],
      batch_size: batchSize,
      retry_backoff: { initial_delay: '10m', max_delay: '10m', jitter: false },
    },
  });
  const ids = await insertRawEvents(fx.db.pool, [
    { aggregateId: 'sick-backlog', queue: poisonQueue },
    ...Array.from({ length: 2 * batchSize }, () => ({ aggregateId: 'sick-backlog' })),
    { aggregateId: 'well-after-backlog' },
  ]);
  const poison = ids[0] as string;
  const healthy = ids[ids.length - 1] as string;

  // Publish until a claim finds nothing due: the first batch fails the poison event (retry in 10 min) and holds its
  // aggregate; the next batches must reach past the held backlog to the healthy event.
  const summary = await fx.relay({ config }).publishDue();
  const states = await eventStates(fx.db.pool, ids);
  assert.equal(states.get(poison)?.status, 'pending');
  assert.equal(states.get(poison)?.retryCount, 1, 'the poison event failed once and waits for its retry');
  assert.equal(states.get(healthy)?.status, 'published', 'the aggregate written after the backlog went out');
  assert.deepEqual(
    (await fx.jobs()).map((j) => j.id),
    [healthy],
    'nothing of the failing aggregate overtook its failed event',
  );
  assert.equal(summary.published, 1);
});
