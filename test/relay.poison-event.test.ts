import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { storeInOutbox } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { waitFor } from './helpers/services.js';

let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('poison', {
    max_retries: 3,
    poll_interval: '5s', // retries must be driven by their schedule, not by polling
    retry_backoff: { initial_delay: '150ms', max_delay: '10s', multiplier: 2, jitter: false },
  });
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
    const poison = await storeInOutbox(fx.db.pool, {
      aggregateId: 'sick',
      eventType: 'bad',
      payload: {},
      queue: poisonQueue,
    });
    const behindPoison = await storeInOutbox(fx.db.pool, { aggregateId: 'sick', eventType: 'after', payload: {} });

    // Record when each failed attempt lands, and how far ahead (database clock) the relay scheduled the next one.
    const attempts: number[] = [];
    const scheduledAhead: number[] = [];
    let last = 0;
    let status = 'pending';
    let healthyDelivered = false;
    while (status === 'pending') {
      const { rows } = await fx.db.pool.query(
        `SELECT retry_count, status, extract(epoch FROM next_attempt_at - clock_timestamp()) * 1000 AS ahead_ms
         FROM exactly_once_outbox WHERE id = $1`,
        [poison.id],
      );
      const row = rows[0];
      status = row.status;
      if (row.retry_count > last) {
        attempts.push(performance.now());
        if (row.status === 'pending') scheduledAhead.push(Number(row.ahead_ms));
        last = row.retry_count;
        if (last === 1) {
          // While the poison event waits for its retries, other aggregates keep flowing...
          const healthy = await storeInOutbox(fx.db.pool, { aggregateId: 'well', eventType: 'ok', payload: {} });
          await waitFor(async () => (await fx.jobs()).some((j) => j.id === healthy.id), 3000, 'healthy event');
          healthyDelivered = true;
          // ...but the event written after the poison one, on its aggregate, does not overtake it.
          assert.ok(!(await fx.jobs()).some((j) => j.id === behindPoison.id), 'held behind the failing event');
        }
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(healthyDelivered);
    const { rows } = await fx.db.pool.query('SELECT * FROM exactly_once_outbox WHERE id = $1', [poison.id]);
    assert.equal(rows[0].status, 'failed');
    assert.equal(rows[0].retry_count, 4, 'first attempt + max_retries (3) retries');
    assert.match(rows[0].last_error, /WRONGTYPE/);
    assert.equal(attempts.length, 4);
    const gaps = attempts.slice(1).map((t, i) => t - (attempts[i] as number));
    // Scheduled delays 150, 300, 600 ms (no jitter): no retry ever comes early...
    [150, 300, 600].forEach((delay, i) => {
      assert.ok((gaps[i] as number) >= delay - 20, `gap ${i} ${gaps[i]} ms >= ${delay} ms`);
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
    await waitFor(async () => (await fx.jobs()).some((j) => j.id === behindPoison.id), 7000, 'event behind poison');
    assert.equal(await fx.redis.get(poisonQueue), 'occupied', 'the poison destination was never touched');
  } finally {
    await relay.stop();
  }
});
