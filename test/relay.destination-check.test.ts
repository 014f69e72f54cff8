import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { markKey } from '../src/publishers/hash-tag.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { eventStates, insertRawEvents } from './helpers/raw-events.js';

// The writer refuses a destination outside `outbox.allowed_queues`, but a row can also be inserted by plain SQL (an
// operator, another service). The relay checks again with its own config (G6): such a row never reaches Redis.

let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('destcheck', { max_retries: 5 });
});
let foreignKey: string | undefined;
after(async () => {
  // Only reached if the relay wrongly pushed there; never leave it behind.
  if (foreignKey) await fx.redis.del(foreignKey);
  await fx.close();
});

test('a row naming a refused destination ends failed at once and is never pushed; the rest of the batch flows', async () => {
  // The name of a high-water mark: writing into it would make the relay misjudge what it pushed.
  const markerOfAnotherEvent = markKey(fx.lowQueue, '0190f6c2-0000-7000-8000-000000000001', 3);
  // Outside the file's prefix, so the allow-list refuses it; random, so no other run's key can be mistaken for it.
  const foreign = `someone-else:${randomBytes(4).toString('hex')}:list`;
  foreignKey = foreign;
  const ids = await insertRawEvents(fx.db.pool, [
    { aggregateId: 'a', queue: markerOfAnotherEvent },
    { aggregateId: 'a' },
    { aggregateId: 'b', queue: foreign },
    { aggregateId: 'c', queue: `${fx.prefix}own-list` },
  ]);
  const [toMarker, afterIt, toForeign, toOwn] = ids as [string, string, string, string];

  const summary = await fx.relay().publishDue();
  assert.equal(summary.failed, 2, JSON.stringify(summary));
  assert.equal(summary.retried, 0, 'a refusal is final: no retry can change it');
  assert.equal(summary.published, 2);

  const states = await eventStates(fx.db.pool, ids);
  for (const id of [toMarker, toForeign]) {
    const s = states.get(id);
    assert.equal(s?.status, 'failed');
    assert.match(s?.lastError ?? '', /destination refused: .*(reserved|not an allowed destination)/);
  }
  assert.match(states.get(toMarker)?.lastError ?? '', /reserved/);
  assert.equal(states.get(afterIt)?.status, 'published');
  assert.equal(states.get(toOwn)?.status, 'published');

  // Nothing reached the refused keys.
  assert.equal(await fx.redis.exists(markerOfAnotherEvent), 0);
  assert.equal(await fx.redis.exists(foreign), 0);
  assert.deepEqual(
    (await fx.jobs()).map((j) => j.id),
    [afterIt],
  );
  assert.deepEqual(
    (await fx.jobs(`${fx.prefix}own-list`)).map((j) => j.id),
    [toOwn],
  );
});
