import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Relay } from '../src/outbox/postgres/relay.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { createPublisher } from '../src/publishers/create-publisher.js';
import { RedisStreamPublisher, STREAM_FIELDS } from '../src/publishers/redis-stream.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { eventStates, insertRawEvents } from './helpers/raw-events.js';

// `outbox.publisher: stream`: one XADD per event, guarded by the same dedup marker as the list publisher (G2), in
// per-aggregate order (G3). Checked by reading the streams back with XRANGE, as a consumer would. The crash test of
// the stream destination (the CLI relay, 20,000 events, relays SIGKILLed) is test/cluster.stream-relay.test.ts; the
// CLI relay writing streams and lists from one outbox is test/publisher.destination-header.test.ts.
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

test('an entry carries the job fields; a re-run of the same batch appends nothing (high-water marks)', async () => {
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
  // The first relay "dies before COMMIT": its cursor advance is refused after the append.
  await fx.db.pool.query(`
    CREATE FUNCTION test_refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'test: COMMIT refused'; END $$;
    CREATE TRIGGER test_refuse_commit BEFORE INSERT ON exactly_once_outbox_progress
      FOR EACH ROW WHEN (current_query() LIKE '%exactly_once_outbox_advance%') EXECUTE FUNCTION test_refuse_commit();`);
  const crashing = new Relay({ config: fx.config, pool: fx.db.pool, publisher });
  await assert.rejects(crashing.publishDue(), /COMMIT refused/);
  await fx.db.pool.query('DROP TRIGGER test_refuse_commit ON exactly_once_outbox_progress');
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

  // The relay died before COMMIT: the same batch is read again, and its mark says the entry is there.
  const relay = new Relay({ config: fx.config, pool: fx.db.pool, publisher });
  const again = await relay.publishDue();
  assert.deepEqual([again.claimed, again.duplicates], [1, 1], 'claimed again, found in the mark');
  assert.equal((await entries(stream)).length, 1, 'no second entry');
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
