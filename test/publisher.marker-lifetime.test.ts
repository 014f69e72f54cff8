import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PublishUnavailableError } from '../src/errors.js';
import type { ClaimedEvent } from '../src/outbox/types.js';
import { dedupMarkerKey } from '../src/publishers/hash-tag.js';
import { RedisStreamPublisher } from '../src/publishers/redis-stream.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';

/**
 * Issue 10: a dedup marker lives only while its batch's outcome is unknown. The relay deletes a batch's markers once
 * the batch is committed (`forget`), and, because a deleted marker can no longer stop a late push, every publish call
 * carries a deadline that the script checks against the Redis server's clock: a call that arrives after the attempt
 * may have been rolled back pushes nothing (G2).
 */
let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('markerlife');
});
after(async () => {
  await fx.close();
});

let n = 0;
function event(): ClaimedEvent {
  n++;
  return {
    seq: String(n),
    id: `0190a3c4-5d6e-7f80-9a1b-${String(n).padStart(12, '0')}`,
    aggregateType: 'acct',
    aggregateId: `m${n}`,
    eventType: 'tick',
    tenantId: '',
    queue: null,
    retryCount: 0,
    maxRetries: null,
    createdAt: new Date(),
    payload: `{"n":${n}}`,
    headers: '{}',
    priority: null,
    traceparent: null,
    filepath: null,
    filesize: null,
  };
}

const markerOf = (e: ClaimedEvent) => dedupMarkerKey(fx.lowQueue, e.id);

test('forget deletes the markers of the events it is given, and only those', async () => {
  const publisher = fx.publisher();
  const events = [event(), event(), event()];
  const outcomes = await publisher.publish(events, { deadline: performance.now() + 10_000 });
  assert.deepEqual(
    outcomes.map((o) => o.kind),
    ['published', 'published', 'published'],
  );
  for (const e of events) assert.equal(await fx.redis.exists(markerOf(e)), 1, 'marker set with the push');
  await publisher.forget(events.slice(0, 2));
  assert.deepEqual(
    await Promise.all(events.map((e) => fx.redis.exists(markerOf(e)))),
    [0, 0, 1],
    'only the forgotten events lose their markers',
  );
});

test('a publish call that reaches Redis after its deadline pushes nothing and fails as an outage', async () => {
  const publisher = fx.publisher();
  // Learn the server's clock first, so the refusal below comes from the script's check, not from a missing offset.
  await publisher.publish([event()], { deadline: performance.now() + 10_000 });
  const before = await fx.redis.llen(fx.lowQueue);
  const late = event();
  await assert.rejects(publisher.publish([late], { deadline: performance.now() - 50 }), (err: unknown) => {
    assert.ok(err instanceof PublishUnavailableError, String(err));
    assert.match((err as Error).message, /STALE publish call arrived \d+ ms after its deadline/);
    return true;
  });
  assert.equal(await fx.redis.llen(fx.lowQueue), before, 'nothing pushed');
  assert.equal(await fx.redis.exists(markerOf(late)), 0, 'no marker set');
  // The next call in time goes through (the clock is read again after a refusal).
  const outcomes = await publisher.publish([late], { deadline: performance.now() + 10_000 });
  assert.deepEqual(
    outcomes.map((o) => o.kind),
    ['published'],
  );
});

test('the relay deletes a batch’s markers after its COMMIT: none are left once it has drained', async () => {
  await fx.db.pool.query(
    `INSERT INTO exactly_once_outbox (id, aggregate_type, aggregate_id, event_type, payload, headers)
     SELECT gen_random_uuid(), 'acct', 'r' || (i % 7), 'tick', jsonb_build_object('i', i), '{}'::jsonb
     FROM generate_series(1, 300) AS i`,
  );
  const relay = fx.relay();
  const summary = await relay.publishDue();
  assert.equal(summary.published, 300);
  const { rows } = await fx.db.pool.query<{ id: string }>(
    "SELECT id FROM exactly_once_outbox WHERE aggregate_id LIKE 'r%' AND status = 'published'",
  );
  assert.equal(rows.length, 300);
  const left = await Promise.all(rows.map((r) => fx.redis.exists(dedupMarkerKey(fx.lowQueue, r.id))));
  assert.equal(
    left.reduce((a, b) => a + b, 0),
    0,
    'no marker left for a committed event',
  );
});

// `outbox.publisher: stream` shares the list publisher's marker lifetime: the same deletion after COMMIT and the same
// deadline, so marker memory stays bounded and a late call appends nothing there either.
const stream = () => `${fx.prefix}markerlife:stream`;
const streamPublisher = () =>
  new RedisStreamPublisher(fx.redis, {
    queuePattern: fx.config.outbox.queuePattern,
    dedupWindowMs: fx.config.outbox.dedupWindow,
    timeoutMs: fx.config.outbox.publishTimeout,
  });

test('stream: the relay deletes a batch’s markers after its COMMIT: none are left once it has drained', async () => {
  await fx.db.pool.query(
    `INSERT INTO exactly_once_outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, queue)
     SELECT gen_random_uuid(), 'acct', 's' || (i % 7), 'tick', jsonb_build_object('i', i), '{}'::jsonb, $1
     FROM generate_series(1, 300) AS i`,
    [stream()],
  );
  const relay = fx.relay({ publisher: streamPublisher() });
  assert.equal((await relay.publishDue()).published, 300);
  assert.equal(await fx.redis.xlen(stream()), 300);
  const { rows } = await fx.db.pool.query<{ id: string }>(
    "SELECT id FROM exactly_once_outbox WHERE aggregate_id LIKE 's%' AND status = 'published'",
  );
  assert.equal(rows.length, 300);
  const left = await Promise.all(rows.map((r) => fx.redis.exists(dedupMarkerKey(stream(), r.id))));
  assert.equal(
    left.reduce((a, b) => a + b, 0),
    0,
    'no marker left for a committed event',
  );
});

test('stream: a publish call that reaches Redis after its deadline appends nothing and fails as an outage', async () => {
  const publisher = streamPublisher();
  const toStream = (e: ClaimedEvent): ClaimedEvent => ({ ...e, queue: stream() });
  // Learn the server's clock first, so the refusal below comes from the script's check, not from a missing offset.
  await publisher.publish([toStream(event())], { deadline: performance.now() + 10_000 });
  const before = await fx.redis.xlen(stream());
  const late = toStream(event());
  await assert.rejects(publisher.publish([late], { deadline: performance.now() - 50 }), (err: unknown) => {
    assert.ok(err instanceof PublishUnavailableError, String(err));
    assert.match((err as Error).message, /STALE publish call arrived \d+ ms after its deadline/);
    return true;
  });
  assert.equal(await fx.redis.xlen(stream()), before, 'nothing appended');
  assert.equal(await fx.redis.exists(dedupMarkerKey(stream(), late.id)), 0, 'no marker set');
  const outcomes = await publisher.publish([late], { deadline: performance.now() + 10_000 });
  assert.deepEqual(
    outcomes.map((o) => o.kind),
    ['published'],
  );
  assert.equal(await fx.redis.xlen(stream()), before + 1);
});
