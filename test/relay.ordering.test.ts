import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import pg from 'pg';
import { type Config, configFromObject } from '../src/config/load-config.js';
import { Relay } from '../src/outbox/postgres/relay.js';
import type { ClaimedEvent, Publisher, PublishOptions } from '../src/outbox/types.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { REDIS_URL, waitFor } from './helpers/services.js';

let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('ordering', { batch_size: 100 });
});
after(async () => {
  await fx.close();
});
beforeEach(async () => {
  await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
  await fx.redis.del(fx.lowQueue);
});

function withOutbox(outbox: Record<string, unknown>): Config {
  return configFromObject({
    database: { url: fx.db.url },
    redis: { url: REDIS_URL },
    outbox: { queue_pattern: fx.config.outbox.queuePattern, poll_interval: '200ms', ...outbox },
  });
}

function assertAggregateOrder(jobs: Record<string, unknown>[]): void {
  const next = new Map<string, number>();
  for (const j of jobs) {
    const agg = j.aggregate_id as string;
    const n = (j.payload as { n: number }).n;
    assert.equal(n, next.get(agg) ?? 0, `aggregate ${agg}: expected event ${next.get(agg) ?? 0}, got ${n}`);
    next.set(agg, n + 1);
  }
}

// G3: per-aggregate order with several relay loops; a failing event holds back only its own aggregate.
test('one hot aggregate drains in full batches, not one event per round trip', async () => {
  await storeInOutboxStandalone(
    fx.db.pool,
    Array.from({ length: 450 }, (_, n) => ({ aggregateId: 'hot', eventType: 'e', payload: { n } })),
  );
  const relay = fx.relay();
  const sizes: number[] = [];
  for (;;) {
    const batch = await relay.runBatch();
    if (batch.claimed === 0) break;
    sizes.push(batch.claimed);
  }
  assert.deepEqual(sizes, [100, 100, 100, 100, 50]);
  assertAggregateOrder(await fx.jobs());
});

test('eight relays at once on interleaved aggregates: each event once, per-aggregate order kept', async () => {
  const aggregates = 4;
  const total = 4000;
  for (let start = 0; start < total; start += 500) {
    await storeInOutboxStandalone(
      fx.db.pool,
      Array.from({ length: 500 }, (_, k) => {
        const i = start + k;
        return { aggregateId: `g${i % aggregates}`, eventType: 'e', payload: { n: Math.floor(i / aggregates) } };
      }),
    );
  }
  const config = withOutbox({ batch_size: 10, concurrency: 2 });
  const relays = Array.from({ length: 4 }, () => fx.relay({ config }));
  await Promise.all(relays.map((r) => r.start()));
  try {
    await waitFor(async () => (await fx.redis.llen(fx.lowQueue)) >= total, 30_000, 'all events');
  } finally {
    await Promise.all(relays.map((r) => r.stop()));
  }
  const jobs = await fx.jobs();
  assert.equal(jobs.length, total);
  assert.equal(new Set(jobs.map((j) => j.id)).size, total);
  assertAggregateOrder(jobs);
});

test('a batch pushed to Redis whose transaction never committed is not pushed again', async () => {
  const events = await storeInOutboxStandalone(
    fx.db.pool,
    Array.from({ length: 30 }, (_, n) => ({
      aggregateId: `w${n % 3}`,
      eventType: 'e',
      payload: { n: Math.floor(n / 3) },
    })),
  );
  const real = fx.publisher();
  // The crash window: Redis has the jobs, then the relay dies before COMMIT.
  const crashing: Publisher = {
    async publish(batch: readonly ClaimedEvent[], options?: PublishOptions) {
      await real.publish(batch, options);
      throw new Error('relay died before commit');
    },
  };
  await assert.rejects(fx.relay({ publisher: crashing }).runBatch(), /relay died before commit/);
  const { rows } = await fx.db.pool.query(
    "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'pending'",
  );
  assert.equal(rows[0].n, 30, 'nothing marked: the transaction rolled back');
  assert.equal(await fx.redis.llen(fx.lowQueue), 30);

  const summary = await fx.relay().publishDue();
  assert.equal(summary.duplicates, 30, 'the high-water marks recognised every job');
  assert.equal(summary.published, 0);
  const jobs = await fx.jobs();
  assert.equal(jobs.length, 30);
  assert.deepEqual(new Set(jobs.map((j) => j.id)), new Set(events.map((e) => e.id)));
});

test('a lane held by another relay is skipped, the other lanes flow, and it follows once released', async () => {
  // Two aggregates in different lanes (a lane is a hash of the aggregate, migrations/0008).
  const { rows } = await fx.db.pool.query<{ id: string; lane: number }>(
    `SELECT 'a' || n AS id, hashtext('acct/a' || n) & 15 AS lane FROM generate_series(1, 64) n`,
  );
  const busy = rows[0] as { id: string; lane: number };
  const free = rows.find((r) => r.lane !== busy.lane) as { id: string; lane: number };
  await storeInOutboxStandalone(fx.db.pool, [
    { aggregateType: 'acct', aggregateId: busy.id, eventType: 'e', payload: { n: 0 } },
    { aggregateType: 'acct', aggregateId: free.id, eventType: 'e', payload: { n: 0 } },
  ]);
  // Another relay's open transaction holding the busy aggregate's lane.
  const other = new pg.Client({ connectionString: fx.db.url });
  await other.connect();
  await other.query('BEGIN');
  await other.query('SELECT lane FROM exactly_once_outbox_lanes WHERE lane = $1 FOR UPDATE', [busy.lane]);
  try {
    const first = await fx.relay().publishDue();
    assert.equal(first.published, 1);
    assert.deepEqual(
      (await fx.jobs()).map((j) => j.aggregate_id),
      [free.id],
    );
  } finally {
    await other.query('COMMIT');
    await other.end();
  }
  const second = await fx.relay().publishDue();
  assert.equal(second.published, 1);
  assert.deepEqual(
    (await fx.jobs()).map((j) => j.aggregate_id),
    [free.id, busy.id],
  );
});

test('publishDue on an empty outbox says nothing happened', async () => {
  const relay = new Relay({ config: fx.config, pool: fx.db.pool, publisher: fx.publisher() });
  assert.deepEqual(await relay.publishDue(), {
    claimed: 0,
    published: 0,
    duplicates: 0,
    retried: 0,
    failed: 0,
    held: 0,
  });
});
