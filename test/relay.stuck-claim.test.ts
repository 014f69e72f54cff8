import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Publisher } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { waitFor } from './helpers/services.js';

let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('stuck', { claim_timeout: '1s' });
});
after(async () => {
  await fx.close();
});

test('a relay wedged inside a batch loses its claim after claim_timeout; another relay delivers the events', async () => {
  const events = await storeInOutbox(
    fx.db.pool,
    Array.from({ length: 5 }, (_, n) => ({ aggregateId: 'wedged', eventType: 'e', payload: { n } })),
  );
  let entered = false;
  // A publisher that never returns: the relay holds its claim (row + advisory locks) and goes silent.
  const hanging: Publisher = {
    publish: () => {
      entered = true;
      return new Promise(() => {});
    },
  };
  const stuck = fx.relay({ publisher: hanging });
  const stuckBatch = stuck.runBatch();
  stuckBatch.catch(() => {});
  await waitFor(() => entered, 5000, 'the wedged relay to claim');

  const started = performance.now();
  const healthy = fx.relay();
  await healthy.start();
  try {
    await waitFor(async () => (await fx.redis.llen(fx.lowQueue)) === 5, 10_000, 'the healthy relay to deliver');
  } finally {
    await healthy.stop();
  }
  const recoveredAfter = performance.now() - started;
  assert.ok(recoveredAfter < 5000, `recovered after ${recoveredAfter} ms, not hours`);
  assert.deepEqual(
    (await fx.jobs()).map((j) => j.id),
    events.map((e) => e.id),
  );
});
