import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PublishUnavailableError } from '../src/errors.js';
import type { ClaimedEvent, EventPosition } from '../src/outbox/types.js';
import { markKey } from '../src/publishers/hash-tag.js';
import { RedisStreamPublisher } from '../src/publishers/redis-stream.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';

/**
 * G2 without a marker per event: each lane's events reach a destination guarded by one high-water mark per (lane,
 * destination), written by the script that writes the events (src/publishers/lua/publish-marks.lua). So Redis holds
 * a fixed number of keys for exactly-once whatever the traffic, a batch re-run after a crash writes only what the
 * first run did not, and a call that arrives after its deadline writes nothing.
 */
let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('marks');
});
after(async () => {
  await fx.close();
});

const OUTBOX = '0190a3c4-5d6e-7f80-9a1b-000000000042';
let n = 0;
function event(position?: Partial<EventPosition>): ClaimedEvent {
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
    ...(position ? { position: { lane: 1, kind: 'c', epoch: '7', seq: String(n), ...position } } : {}),
  };
}

const opts = () => ({ deadline: performance.now() + 10_000, outboxId: OUTBOX });

async function marks(pattern: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await fx.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found.sort();
}

test('a re-run of a batch writes only what the first run did not; a later interval is new, an earlier one settled', async () => {
  const publisher = fx.publisher();
  const batch = [event(), event(), event()].map((e) => ({
    ...e,
    position: { lane: 1, kind: 'c' as const, epoch: '7', seq: e.seq },
  }));
  const first = await publisher.publish(batch.slice(0, 2), opts());
  assert.deepEqual(
    first.map((o) => o.kind),
    ['published', 'published'],
  );
  // The re-run (a longer batch: the first run was cut short) finds the first two written.
  const again = await publisher.publish(batch, opts());
  assert.deepEqual(
    again.map((o) => o.kind),
    ['duplicate', 'duplicate', 'published'],
  );
  // The next interval of the lane is new, even at lower seqs (a straggler written early, committed late).
  const late = { ...event(), seq: '1', position: { lane: 1, kind: 'c' as const, epoch: '8', seq: '1' } };
  assert.deepEqual(
    (await publisher.publish([late], opts())).map((o) => o.kind),
    ['published'],
  );
  // A call for an earlier interval than the mark's is settled already (a later one was written): nothing written.
  const stale = { ...event(), position: { lane: 1, kind: 'c' as const, epoch: '7', seq: '999' } };
  assert.deepEqual(
    (await publisher.publish([stale], opts())).map((o) => o.kind),
    ['duplicate'],
  );
  assert.equal(await fx.redis.llen(fx.lowQueue), 4, 'each job written once');
  assert.deepEqual(await marks(`{${fx.prefix}*:eo:hwm:*`), [markKey(fx.lowQueue, OUTBOX, 1)]);
});

test('one mark per lane and destination, whatever the traffic: 3,000 events through the relay leave at most 16 per list', async () => {
  await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
  await fx.redis.del(fx.lowQueue);
  for (const key of await marks(`{${fx.prefix}*:eo:hwm:*`)) await fx.redis.del(key);
  const write = (from: number) =>
    fx.db.pool.query(
      `INSERT INTO exactly_once_outbox_events (aggregate_type, aggregate_id, event_type, payload)
       SELECT 'acct', 'r' || (i % 500), 'tick', jsonb_build_object('i', i) FROM generate_series($1::int, $1::int + 1499) AS i`,
      [from],
    );
  await write(0);
  const relay = fx.relay();
  assert.equal((await relay.publishDue()).published, 1500);
  const after1500 = await marks(`{${fx.prefix}*:eo:hwm:*`);
  assert.ok(after1500.length > 0 && after1500.length <= 16, `${after1500.length} marks`);
  await write(1500);
  assert.equal((await relay.publishDue()).published, 1500);
  const after3000 = await marks(`{${fx.prefix}*:eo:hwm:*`);
  assert.deepEqual(after3000.filter((k) => !after1500.includes(k)).length <= 16 - after1500.length, true);
  assert.ok(after3000.length <= 16, `${after3000.length} marks after 3,000 events`);
  assert.equal(await fx.redis.llen(fx.lowQueue), 3000);
});

test('a publish call that reaches Redis after its deadline writes nothing and fails as an outage', async () => {
  const publisher = fx.publisher();
  // Learn the server's clock first, so the refusal below comes from the script's check, not from a missing offset.
  await publisher.publish([event({ lane: 2, epoch: '1' })], opts());
  const before = await fx.redis.llen(fx.lowQueue);
  const late = event({ lane: 2, epoch: '1' });
  await assert.rejects(
    publisher.publish([late], { deadline: performance.now() - 50, outboxId: OUTBOX }),
    (err: unknown) => {
      assert.ok(err instanceof PublishUnavailableError, String(err));
      assert.match((err as Error).message, /STALE publish call arrived \d+ ms after its deadline/);
      return true;
    },
  );
  assert.equal(await fx.redis.llen(fx.lowQueue), before, 'nothing pushed');
  // The next call in time goes through (the clock is read again after a refusal), and was not marked written.
  assert.deepEqual(
    (await publisher.publish([late], opts())).map((o) => o.kind),
    ['published'],
  );
});

// `outbox.publisher: stream` shares the marks and the deadline.
const stream = () => `${fx.prefix}marks:stream`;
const streamPublisher = () =>
  new RedisStreamPublisher(fx.redis, {
    queuePattern: fx.config.outbox.queuePattern,
    dedupWindowMs: fx.config.outbox.dedupWindow,
    timeoutMs: fx.config.outbox.publishTimeout,
  });

test('stream: a re-run appends only what the first run did not, and the stream has one mark per lane', async () => {
  const publisher = streamPublisher();
  const batch = [event(), event()].map((e) => ({
    ...e,
    queue: stream(),
    position: { lane: 5, kind: 'c' as const, epoch: '3', seq: e.seq },
  }));
  assert.deepEqual(
    (await publisher.publish(batch.slice(0, 1), opts())).map((o) => o.kind),
    ['published'],
  );
  assert.deepEqual(
    (await publisher.publish(batch, opts())).map((o) => o.kind),
    ['duplicate', 'published'],
  );
  assert.equal(await fx.redis.xlen(stream()), 2);
  assert.ok((await marks(`{${stream()}}:eo:hwm:*`)).length === 1);
});

test('stream: a publish call that reaches Redis after its deadline appends nothing and fails as an outage', async () => {
  const publisher = streamPublisher();
  const s = stream();
  await publisher.publish([{ ...event({ lane: 6 }), queue: s }], opts());
  const before = await fx.redis.xlen(s);
  const late = { ...event({ lane: 6 }), queue: s };
  await assert.rejects(publisher.publish([late], { deadline: performance.now() - 50, outboxId: OUTBOX }), {
    code: 'EO_PUBLISH_UNAVAILABLE',
    message: /STALE/,
  });
  assert.equal(await fx.redis.xlen(s), before, 'nothing appended');
});
