import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Relay } from '../src/outbox/postgres/relay.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { waitFor } from './helpers/services.js';

let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('stuck', { claim_timeout: '1s', publish_timeout: '500ms' });
});
after(async () => {
  await fx.close();
});

const published = async () =>
  (
    await fx.db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'published'",
    )
  ).rows[0]?.n ?? 0;

// G5: a wedged relay's claim is recovered after `claim_timeout`, by another relay, in seconds. A publish cannot wedge
// (publish_timeout, below claim_timeout, ends it); what can is the relay after its push and before its COMMIT (a
// frozen process, an event loop blocked): the test holds it there, as the test fault `stall-after-push` does.
test('a relay wedged inside a batch loses its claim after claim_timeout; another relay finishes the events, none pushed twice', async () => {
  const events = await storeInOutboxStandalone(
    fx.db.pool,
    Array.from({ length: 5 }, (_, n) => ({ aggregateId: 'wedged', eventType: 'e', payload: { n } })),
  );
  let wedgedAt: number | undefined;
  let unwedge: ((err: Error) => void) | undefined;
  // Released at the end so the relay gives its connection back: a connection that is never returned makes pool.end()
  // wait forever, the process exits with the promise pending and the database is left behind.
  const stuck = new Relay({
    config: fx.config,
    pool: fx.db.pool,
    publisher: fx.publisher(),
    testFault: {
      afterPush: () => {
        wedgedAt = performance.now();
        return new Promise((_, reject) => {
          unwedge = reject;
        });
      },
    },
  });
  const stuckOutcome = stuck.runBatch().then(
    () => 'returned',
    (err: Error) => err.message,
  );
  try {
    await waitFor(() => wedgedAt !== undefined, 5000, 'the wedged relay to push');
    assert.equal(await fx.redis.llen(fx.lowQueue), 5, 'the wedged relay pushed the batch');

    const healthy = fx.relay();
    await healthy.start();
    let recoveredAt = 0;
    try {
      await waitFor(async () => (await published()) === 5, 10_000, 'the healthy relay to commit the events');
      recoveredAt = performance.now();
    } finally {
      await healthy.stop();
    }
    const recoveredAfter = recoveredAt - (wedgedAt as number);
    // Lower bound: the claim is freed by claim_timeout (1 s), not by the healthy relay ignoring the wedged one's locks.
    assert.ok(recoveredAfter >= 900, `recovered after ${recoveredAfter} ms, before claim_timeout ran out`);
    assert.ok(recoveredAfter < 5000, `recovered after ${recoveredAfter} ms, not hours`);
  } finally {
    unwedge?.(new Error('test over: the wedged relay gives up'));
  }
  // The wedged batch ended (its connection went back to the pool, so the database can be dropped).
  assert.match(await stuckOutcome, /test over|terminat|idle-in-transaction|Connection/i);
  assert.deepEqual(
    (await fx.jobs()).map((j) => j.id),
    events.map((e) => e.id),
    'each event once, in order: the healthy relay found them pushed',
  );
});
