import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Relay } from '../src/outbox/relay.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox, storeInOutboxStandalone } from '../src/outbox/writer.js';
import { createPublisher } from '../src/publishers/create-publisher.js';
import { dedupMarkerKey } from '../src/publishers/hash-tag.js';
import { RedisStreamPublisher, STREAM_FIELDS } from '../src/publishers/redis-stream.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { eventStates, insertRawEvents } from './helpers/raw-events.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { REDIS_URL, waitFor } from './helpers/services.js';

// `outbox.publisher: stream`: one XADD per event, guarded by the same dedup marker as the list publisher (G2), in
// per-aggregate order (G3). Checked by reading the streams back with XRANGE, as a consumer would.
let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('stream', {
    publisher: 'stream',
    batch_size: 25,
    retry_backoff: { initial_delay: '100ms', jitter: false },
  });
});
after(async () => {
  await fx.close();
});

/** Every entry of a stream, oldest first, as field maps (with the entry id under `_id`). */
async function entries(stream: string): Promise<Record<string, string>[]> {
  const raw = await fx.redis.xrange(stream, '-', '+');
  return raw.map(([id, flat]) => {
    const fields: Record<string, string> = { _id: id };
    for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
    return fields;
  });
}

test('config: outbox.publisher stream makes the Manager-side factory build the stream publisher', () => {
  assert.ok(createPublisher(fx.config, { redis: fx.redis }) instanceof RedisStreamPublisher);
  assert.equal(fx.config.outbox.stream.maxlen, undefined, 'no trimming unless asked');
});

test('the CLI relay publishing to streams, relays crashing mid-way: every event once, in order per aggregate', async (t) => {
  const EVENTS = 2000;
  const AGGREGATES = 40;
  const streams = [`${fx.prefix}stream:a`, `${fx.prefix}stream:b`];
  for (let start = 0; start < EVENTS; start += 500) {
    const events: NewOutboxEvent[] = [];
    for (let i = start; i < start + 500; i++) {
      const agg = i % AGGREGATES;
      events.push({
        aggregateType: 'acct',
        aggregateId: `a${agg}`,
        eventType: 'tick',
        payload: { n: Math.floor(i / AGGREGATES) },
        queue: streams[agg % 2] as string,
      });
    }
    await fx.kysely.transaction().execute((trx) => storeInOutbox(trx, events, fx.config.outbox));
  }
  const configFile = writeConfigFile('stream', {
    database: { url: fx.db.url },
    redis: { url: REDIS_URL },
    outbox: {
      publisher: 'stream',
      queue_pattern: fx.config.outbox.queuePattern,
      allowed_queues: [`${fx.prefix}*`],
      batch_size: 25,
      poll_interval: '200ms',
    },
  });
  const published = async () =>
    (await fx.db.pool.query("SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'published'")).rows[0]
      .n as number;
  const relays: RelayProcess[] = [];
  let killedAt = 0;
  try {
    // A crashes by itself between its 2nd XADD batch and the COMMIT (the crash window); B is SIGKILLed by us.
    const a = spawnRelay(configFile, [], { EXACTLY_ONCE_TEST_FAULT: 'kill-after-push:2' });
    const b = spawnRelay(configFile);
    relays.push(a, b);
    assert.equal(
      (await exitWithin(a, 60_000)).signal,
      'SIGKILL',
      `relay A should crash after its push:\n${a.stderr()}`,
    );
    await waitFor(async () => (await published()) >= EVENTS / 3, 60_000, 'a third of the events published');
    b.child.kill('SIGKILL');
    await exitWithin(b, 10_000);
    killedAt = await published();
    assert.ok(killedAt < EVENTS, 'relay B was killed while events were still pending');
    relays.push(spawnRelay(configFile), spawnRelay(configFile));
    await waitFor(async () => (await published()) === EVENTS, 60_000, 'every event published');
  } finally {
    for (const r of relays) r.child.kill('SIGKILL');
    await Promise.all(relays.map((r) => exitWithin(r, 10_000)));
  }

  const all = [...(await entries(streams[0] as string)), ...(await entries(streams[1] as string))];
  const counts = new Map<string, number>();
  for (const e of all) counts.set(e.id as string, (counts.get(e.id as string) ?? 0) + 1);
  assert.equal([...counts.values()].filter((c) => c > 1).length, 0, 'no event appended twice');
  assert.equal(counts.size, EVENTS, 'every event appended');
  assert.equal(all.length, EVENTS);
  const next = new Map<string, number>();
  let reordered = 0;
  for (const e of all) {
    const n = (JSON.parse(e.payload as string) as { n: number }).n;
    if (n !== (next.get(e.aggregate_id as string) ?? 0)) reordered++;
    next.set(e.aggregate_id as string, n + 1);
  }
  assert.equal(reordered, 0, 'per-aggregate order held');
  t.diagnostic(`relay B was SIGKILLed with ${killedAt} of ${EVENTS} published`);
});

test('an entry carries the job fields; a re-run of the same rows appends nothing (markers)', async () => {
  const stream = `${fx.prefix}stream:shape`;
  const [event] = await storeInOutboxStandalone(
    fx.db.pool,
    [
      {
        aggregateId: 'shape',
        eventType: 'file.uploaded',
        payload: { filepath: '/in/a.csv', filesize: 1234, big: 'ü' },
        headers: { priority: 'high', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
        queue: stream,
      },
    ],
    fx.config.outbox,
  );
  assert.ok(event);
  const publisher = createPublisher(fx.config, { redis: fx.redis });
  // The first relay "dies before COMMIT": without `forget` its marker stays, as it would after a crash.
  const crashing = new Relay({
    config: fx.config,
    pool: fx.db.pool,
    publisher: { publish: (events, options) => publisher.publish(events, options) },
  });
  assert.equal((await crashing.publishDue()).published, 1);
  const [entry] = await entries(stream);
  assert.ok(entry);
  assert.deepEqual(Object.keys(entry).slice(1), [...STREAM_FIELDS]);
  assert.deepEqual(
    { ...entry, _id: undefined, creation_time: undefined },
    {
      _id: undefined,
      id: event.id,
      filepath: '/in/a.csv',
      filesize: '1234',
      priority: 'high',
      retries: '0',
      creation_time: undefined,
      trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
      span_id: '00f067aa0ba902b7',
      event_type: 'file.uploaded',
      aggregate_type: event.aggregateType,
      aggregate_id: 'shape',
      tenant_id: '',
      payload: entry.payload,
      headers: entry.headers,
    },
  );
  assert.deepEqual(JSON.parse(entry.payload as string), { filepath: '/in/a.csv', filesize: 1234, big: 'ü' });
  assert.equal(new Date(entry.creation_time as string).toISOString(), entry.creation_time);

  // The relay died before COMMIT: the same rows are published again, and find their markers.
  await fx.db.pool.query("UPDATE exactly_once_outbox SET status = 'pending', published_at = NULL WHERE id = $1", [
    event.id,
  ]);
  assert.ok((await fx.redis.pttl(dedupMarkerKey(stream, event.id))) > 0, 'the marker guards the stream');
  const relay = new Relay({ config: fx.config, pool: fx.db.pool, publisher });
  const again = await relay.publishDue();
  assert.deepEqual([again.claimed, again.duplicates], [1, 1], 'claimed again, found its marker');
  assert.equal((await entries(stream)).length, 1, 'no second entry');
  assert.equal(await fx.redis.exists(dedupMarkerKey(stream, event.id)), 0, 'committed: the marker is deleted');
});

test('a WRONGTYPE stream fails only its own event; the aggregate behind it is held, others go out', async () => {
  const bad = `${fx.prefix}stream:occupied`;
  const good = `${fx.prefix}stream:good`;
  await fx.redis.set(bad, 'not a stream');
  const ids = await insertRawEvents(fx.db.pool, [
    { aggregateId: 'ok1', queue: good },
    { aggregateId: 'sick', queue: bad },
    { aggregateId: 'sick', queue: good },
    { aggregateId: 'ok2', queue: good },
  ]);
  const relay = new Relay({
    config: fx.config,
    pool: fx.db.pool,
    publisher: createPublisher(fx.config, { redis: fx.redis }),
  });
  const summary = await relay.runBatch();
  assert.deepEqual(
    { published: summary.published, retried: summary.retried, held: summary.held },
    { published: 2, retried: 1, held: 1 },
  );
  assert.deepEqual(
    (await entries(good)).map((e) => e.id),
    [ids[0], ids[3]],
  );
  const states = await eventStates(fx.db.pool, ids);
  assert.match(states.get(ids[1] as string)?.lastError ?? '', /WRONGTYPE/);
  assert.equal(states.get(ids[2] as string)?.retryCount, 0, 'held, not retried');
  assert.equal(await fx.redis.exists(dedupMarkerKey(bad, ids[1] as string)), 0, 'no marker for a failed XADD');
});

test('outbox.stream.maxlen trims each stream to about that many entries (MAXLEN ~)', async () => {
  const stream = `${fx.prefix}stream:trimmed`;
  const publisher = new RedisStreamPublisher(fx.redis, { maxlen: 100 });
  await insertRawEvents(
    fx.db.pool,
    Array.from({ length: 600 }, (_, n) => ({ aggregateId: `t${n % 7}`, queue: stream })),
  );
  const relay = new Relay({ config: fx.config, pool: fx.db.pool, publisher });
  assert.equal((await relay.publishDue()).published, 600);
  const length = await fx.redis.xlen(stream);
  // `~` lets Redis trim whole macro nodes only (100 entries each by default), so the length stays near the bound.
  assert.ok(length >= 100 && length < 300, `stream length ${length}`);
});
