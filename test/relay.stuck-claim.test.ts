import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Publisher } from '../src/outbox/types.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { waitFor } from './helpers/services.js';

let fx: OutboxFixture;
before(async () => {
  // publish_timeout far above claim_timeout: the relay's own timeout must not end the wedge before Postgres does.
  fx = await outboxFixture('stuck', { claim_timeout: '1s', publish_timeout: '30s' });
});
after(async () => {
  await fx.close();
});

// G5: a wedged relay's claim is recovered after `claim_timeout`, by another relay, in seconds.
test('a relay wedged inside a batch loses its claim after claim_timeout; another relay delivers the events', async () => {
  const events = await storeInOutboxStandalone(
    fx.db.pool,
    Array.from({ length: 5 }, (_, n) => ({ aggregateId: 'wedged', eventType: 'e', payload: { n } })),
  );
  let claimedAt: number | undefined;
  let unwedge: ((err: Error) => void) | undefined;
  // A publisher that does not return until the test is over: the relay holds its claim (row + advisory locks) and
  // goes silent. It is released at the end so the relay gives its connection back: a connection that is never
  // returned makes pool.end() wait forever, the process exits with the promise pending and the database is left behind.
  const hanging: Publisher = {
    publish: () => {
      claimedAt = performance.now();
      return new Promise((_, reject) => {
        unwedge = reject;
      });
    },
  };
  const stuck = fx.relay({ publisher: hanging });
  const stuckBatch = stuck.runBatch();
  const stuckOutcome = stuckBatch.then(
    () => 'returned',
    (err: Error) => err.message,
  );
  try {
    await waitFor(() => claimedAt !== undefined, 5000, 'the wedged relay to claim');

    const healthy = fx.relay();
    await healthy.start();
    let deliveredAt = 0;
    try {
      await waitFor(async () => (await fx.redis.llen(fx.lowQueue)) === 5, 10_000, 'the healthy relay to deliver');
      deliveredAt = performance.now();
    } finally {
      await healthy.stop();
    }
    const recoveredAfter = deliveredAt - (claimedAt as number);
    // Lower bound: the claim is freed by claim_timeout (1 s), not by the healthy relay ignoring the wedged one's locks.
    assert.ok(recoveredAfter >= 900, `recovered after ${recoveredAfter} ms, before claim_timeout ran out`);
    assert.ok(recoveredAfter < 5000, `recovered after ${recoveredAfter} ms, not hours`);
  } finally {
    unwedge?.(new Error('test over: the wedged publish gives up'));
  }
  // The wedged batch ended (its connection went back to the pool, so the database can be dropped).
  assert.equal(await stuckOutcome, 'test over: the wedged publish gives up');
  assert.deepEqual(
    (await fx.jobs()).map((j) => j.id),
    events.map((e) => e.id),
  );
});
