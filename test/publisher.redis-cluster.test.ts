import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Relay } from '../src/outbox/postgres/relay.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { hashTag, keySlot, markKey } from '../src/publishers/hash-tag.js';
import { RedisListPublisher } from '../src/publishers/redis-list.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { eventStates, insertRawEvents } from './helpers/raw-events.js';
import { startTestCluster, type TestCluster } from './helpers/redis-cluster.js';

// A real three-master Redis Cluster on loopback ports: the dedup marker and the list it guards must share a slot, or
// the Lua script is refused with CROSSSLOT. The cluster is owned by this file and dies with it (no keys left behind).
let tc: TestCluster;
let fx: OutboxFixture;

before(async () => {
  fx = await outboxFixture('cluster', {
    allowed_queues: ['*'], // the relay's destination check: these tests name odd keys on purpose
    retry_backoff: { initial_delay: '100ms', jitter: false },
  });
  tc = await startTestCluster();
});

after(async () => {
  await tc?.close();
  await fx.close();
});

/** List keys whose hash tag is easy to get wrong. */
const TRICKY_KEYS = [
  'x}y',
  '{}abc',
  '{a}{b}',
  'a{b}c',
  '{',
  '}',
  '{{a}}',
  '}{a}',
  '{}{a}',
  'a{}',
  'a{',
  '',
  'jobqueue:low_priority',
  '{ключ}очередь',
  'очередь}',
  '队列{优先}',
  '{}😀',
  '😀}{',
];

test('keySlot and hashTag agree with CLUSTER KEYSLOT, for tricky and random keys', async () => {
  assert.deepEqual(['{a}{b}', 'a{b}c', '{{a}}', 'x}y', '{}abc', '{', '}', '{ключ}очередь'].map(hashTag), [
    'a',
    'b',
    '{a',
    'x}y',
    '{}abc',
    '{',
    '}',
    'ключ',
  ]);
  // Random keys over an alphabet dense in braces, plus multi-byte characters (Redis hashes UTF-8 bytes).
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const alphabet = ['{', '}', 'a', 'b', ':', 'é', '队', '😀'];
  const keys = [
    ...TRICKY_KEYS,
    ...Array.from({ length: 300 }, () =>
      Array.from({ length: 1 + Math.floor(random() * 8) }, () => alphabet[Math.floor(random() * alphabet.length)]).join(
        '',
      ),
    ),
  ];
  for (const key of keys) assert.equal(keySlot(key), await tc.keyslot(key), `slot of ${JSON.stringify(key)}`);
});

test('each high-water mark lands in its list slot (CLUSTER KEYSLOT), for tricky keys too; two lists never share one', async () => {
  const outbox = '0190f6c2-0000-7000-8000-000000000001';
  const seen = new Set<string>();
  for (const key of TRICKY_KEYS) {
    const mark = markKey(key, outbox, 7);
    assert.equal(await tc.keyslot(mark), await tc.keyslot(key), `mark ${JSON.stringify(mark)} of ${key}`);
    assert.ok(mark.includes(`:eo:hwm:${outbox}:7`), mark);
    assert.ok(!seen.has(mark), `${mark} named twice`);
    seen.add(mark);
  }
});

test('the relay publishes events whose queue is x}y or {}abc, next to good events, each in its list', async () => {
  const queues = ['x}y', '{}abc', '{a}{b}', '}', 'a{b}c'];
  const ids = await insertRawEvents(fx.db.pool, [
    ...queues.map((queue, n) => ({ aggregateId: `q${n}`, queue, payload: `{"n":${n}}` })),
    { aggregateId: 'plain', payload: '{"n":9}' },
  ]);
  const publisher = new RedisListPublisher(tc.client, { queuePattern: 'cl2:jobqueue:{priority}_priority' });
  // The first relay "dies before COMMIT" (its cursor advance is refused): the second run must find each push in the
  // mark of its list's lane, in its list's slot.
  await fx.db.pool.query(`
    CREATE OR REPLACE FUNCTION test_refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'test: COMMIT refused'; END $$;
    CREATE TRIGGER test_refuse_commit BEFORE INSERT ON exactly_once_outbox_progress
      FOR EACH ROW WHEN (current_query() LIKE '%exactly_once_outbox_advance%') EXECUTE FUNCTION test_refuse_commit();`);
  const relay = new Relay({ config: fx.config, pool: fx.db.pool, publisher });
  try {
    await assert.rejects(relay.runBatch(), /COMMIT refused/);
  } finally {
    await fx.db.pool.query('DROP TRIGGER test_refuse_commit ON exactly_once_outbox_progress');
  }
  for (const [n, queue] of queues.entries()) {
    const jobs = (await tc.client.lrange(queue, 0, -1)).map((j) => JSON.parse(j));
    assert.deepEqual(
      jobs.map((j) => j.id),
      [ids[n]],
      `the job in ${queue}`,
    );
  }
  assert.equal(await tc.client.llen('cl2:jobqueue:low_priority'), 1);

  // The second run of the same batch finds every push in its mark and pushes nothing.
  const summary = await relay.runBatch();
  assert.deepEqual(
    { claimed: summary.claimed, duplicates: summary.duplicates, published: summary.published, failed: summary.failed },
    { claimed: ids.length, duplicates: ids.length, published: 0, failed: 0 },
  );
  for (const queue of queues) assert.equal(await tc.client.llen(queue), 1, queue);
});

test('a WRONGTYPE destination fails only its own event; other aggregates, same slot or not, go out in that batch', async () => {
  // `{s}bad` and `{s}good` share slot `s`; the other lists live elsewhere.
  await tc.client.set('{s}bad', 'occupied');
  const ids = await insertRawEvents(fx.db.pool, [
    { aggregateId: 'g1', queue: '{s}good' },
    { aggregateId: 'sick', queue: '{s}bad' },
    { aggregateId: 'g2', queue: '{s}good' },
    { aggregateId: 'sick', queue: '{s}good' },
    { aggregateId: 'g3', queue: '{t}good' },
    { aggregateId: 'g4', queue: 'x}y:wt' },
  ]);
  const [g1, bad, g2, behindBad, g3, g4] = ids;
  const publisher = new RedisListPublisher(tc.client);
  const relay = new Relay({ config: fx.config, pool: fx.db.pool, publisher });
  const first = await relay.runBatch();
  assert.deepEqual(
    { published: first.published, retried: first.retried, held: first.held },
    { published: 4, retried: 1, held: 1 },
  );
  const good = (await tc.client.lrange('{s}good', 0, -1)).reverse().map((j) => JSON.parse(j).id);
  assert.deepEqual(good, [g1, g2], 'the same-slot good events were pushed; the one behind the bad event was not');
  assert.deepEqual(
    (await tc.client.lrange('{t}good', 0, -1)).map((j) => JSON.parse(j).id),
    [g3],
  );
  assert.deepEqual(
    (await tc.client.lrange('x}y:wt', 0, -1)).map((j) => JSON.parse(j).id),
    [g4],
  );
  const states = await eventStates(fx.db.pool, ids);
  assert.equal(states.get(bad as string)?.status, 'pending');
  assert.equal(states.get(bad as string)?.retryCount, 1);
  assert.match(states.get(bad as string)?.lastError ?? '', /WRONGTYPE/);
  assert.equal(states.get(behindBad as string)?.status, 'pending');
  assert.equal(states.get(behindBad as string)?.retryCount, 0, 'held, not retried');
});

test('on Redis Cluster the relay publishes each event once, mark and list in one slot, order kept', async () => {
  const high = 'cl:jobqueue:high_priority';
  const low = 'cl:jobqueue:low_priority';
  // The two lists live in different slots, so one batch needs two script calls.
  assert.notEqual(await tc.keyslot(high), await tc.keyslot(low));
  assert.notEqual(hashTag(high), hashTag(low));
  await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');

  const events = await storeInOutboxStandalone(fx.db.pool, [
    ...Array.from({ length: 20 }, (_, n) => ({ aggregateId: `a${n % 4}`, eventType: 'e', payload: { n } })),
    { aggregateId: 'vip', eventType: 'e', payload: { n: 0 }, headers: { priority: 'high' } },
    // One aggregate spanning both lists: its second event must wait for the next batch, never overtake.
    { aggregateId: 'split', eventType: 'e', payload: { n: 0 }, headers: { priority: 'high' } },
    { aggregateId: 'split', eventType: 'e', payload: { n: 1 } },
  ]);
  const publisher = new RedisListPublisher(tc.client, { queuePattern: 'cl:jobqueue:{priority}_priority' });
  const relay = new Relay({ config: fx.config, pool: fx.db.pool, publisher });
  const first = await relay.runBatch();
  assert.equal(first.held, 1, 'the split aggregate was cut at the slot change');
  const rest = await relay.publishDue();
  assert.equal(first.published + rest.published, events.length);

  const lowJobs = (await tc.client.lrange(low, 0, -1)).reverse().map((j) => JSON.parse(j));
  const highJobs = (await tc.client.lrange(high, 0, -1)).reverse().map((j) => JSON.parse(j));
  assert.equal(lowJobs.length + highJobs.length, events.length);
  assert.deepEqual(new Set([...lowJobs, ...highJobs].map((j) => j.id)), new Set(events.map((e) => e.id)));
  for (const agg of ['a0', 'a1', 'a2', 'a3']) {
    const ns = lowJobs.filter((j) => j.aggregate_id === agg).map((j) => j.payload.n);
    assert.equal(ns.length, 5);
    assert.deepEqual(
      ns,
      [...ns].sort((x, y) => x - y),
      `order of ${agg}`,
    );
  }
  assert.deepEqual(highJobs.map((j) => j.aggregate_id).sort(), ['split', 'vip']);
  const split = [...lowJobs, ...highJobs].filter((j) => j.aggregate_id === 'split');
  assert.equal(split.length, 2);
});
