import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { OutboxEventValidationError } from '../src/errors.js';
import { Relay } from '../src/outbox/postgres/relay.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox, storeInOutboxStandalone } from '../src/outbox/writer.js';
import { createPublisher } from '../src/publishers/create-publisher.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { eventStates } from './helpers/raw-events.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { REDIS_URL, waitFor } from './helpers/services.js';

// Per-event destination kind: the header `destination: list | stream` overrides `outbox.publisher` for that event.
// A batch mixes kinds; each key keeps its per-aggregate order and each event is written once (G2, G3), even when a
// relay dies between the writes and the COMMIT. A bad value is refused by storeInOutbox, naming the field (G6).
let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('destination', { batch_size: 50, retry_backoff: { initial_delay: '100ms', jitter: false } });
});
after(async () => {
  await fx.close();
});

const countRows = async () =>
  (await fx.db.pool.query('SELECT count(*)::int AS n FROM exactly_once_outbox')).rows[0].n as number;

/** A stream's entries, oldest first, as field maps. */
async function streamEntries(stream: string): Promise<Record<string, string>[]> {
  return (await fx.redis.xrange(stream, '-', '+')).map(([, flat]) => {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i] as string] = flat[i + 1] as string;
    return f;
  });
}

test('storeInOutbox refuses a destination header other than list or stream, naming the field; nothing is written', async () => {
  const before = await countRows();
  for (const destination of ['kafka', 'Stream', '']) {
    await assert.rejects(
      fx.kysely.transaction().execute((trx) =>
        storeInOutbox(
          trx,
          [
            { aggregateId: 'ok', eventType: 'e', payload: null },
            { aggregateId: 'x', eventType: 'e', payload: null, headers: { destination } },
          ],
          fx.config.outbox,
        ),
      ),
      (err: unknown) =>
        err instanceof OutboxEventValidationError &&
        err.field === 'headers.destination' &&
        err.index === 1 &&
        err.message.includes('"list" or "stream"') &&
        err.message.includes(JSON.stringify(destination)),
    );
  }
  assert.equal(await countRows(), before, 'no row of the refused batches was written');
});

test('the CLI relay (publisher: list) writes a mixed batch: header-picked streams and lists, each once, in order per key', async (t) => {
  const EVENTS = 1200;
  const AGGREGATES = 24;
  const list = `${fx.prefix}mixed:list`;
  const stream = `${fx.prefix}mixed:stream`;
  // Each aggregate switches kind every 5 events: no header (the configured list), `stream`, explicit `list`, `stream`.
  const kinds = ['default', 'stream', 'list', 'stream'] as const;
  const kindOf = (i: number) => kinds[Math.floor(i / AGGREGATES / 5) % 4] as (typeof kinds)[number];
  const events: NewOutboxEvent[] = [];
  for (let i = 0; i < EVENTS; i++) {
    const kind = kindOf(i);
    events.push({
      aggregateId: `m${i % AGGREGATES}`,
      eventType: 'tick',
      payload: { n: Math.floor(i / AGGREGATES) },
      ...(kind === 'default' ? {} : { headers: { destination: kind } }),
      queue: kind === 'stream' ? stream : list,
    });
  }
  await fx.kysely.transaction().execute((trx) => storeInOutbox(trx, events, fx.config.outbox));
  const configFile = writeConfigFile('destination', {
    database: { url: fx.db.url },
    redis: { url: REDIS_URL },
    outbox: {
      publisher: 'list',
      queue_pattern: fx.config.outbox.queuePattern,
      allowed_queues: [`${fx.prefix}*`],
      batch_size: 50,
      poll_interval: '200ms',
    },
  });
  const published = async () =>
    (await fx.db.pool.query("SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'published'")).rows[0]
      .n as number;
  const relays: RelayProcess[] = [];
  try {
    // A dies in the crash window (after its 3rd batch's writes, before COMMIT): its markers must stop a second copy
    // on both kinds of key.
    const a = spawnRelay(configFile, [], { EXACTLY_ONCE_TEST_FAULT: 'kill-after-push:3' });
    relays.push(a);
    assert.equal(
      (await exitWithin(a, 60_000)).signal,
      'SIGKILL',
      `relay A should crash after its push:\n${a.stderr()}`,
    );
    relays.push(spawnRelay(configFile), spawnRelay(configFile));
    await waitFor(async () => (await published()) === EVENTS, 60_000, 'every event published');
  } finally {
    for (const r of relays) r.child.kill('SIGKILL');
    await Promise.all(relays.map((r) => exitWithin(r, 10_000)));
  }

  const jobs = await fx.jobs(list);
  const entries = await streamEntries(stream);
  const seen = [
    ...jobs.map((j) => ({ id: j.id as string, agg: j.aggregate_id as string, n: (j.payload as { n: number }).n })),
    ...entries.map((e) => ({
      id: e.id as string,
      agg: e.aggregate_id as string,
      n: (JSON.parse(e.payload as string) as { n: number }).n,
    })),
  ];
  const counts = new Map<string, number>();
  for (const e of seen) counts.set(e.id, (counts.get(e.id) ?? 0) + 1);
  assert.equal([...counts.values()].filter((c) => c > 1).length, 0, 'no event written twice');
  assert.equal(counts.size, EVENTS, 'every event written');
  const expectedInStream = events.filter((e) => e.queue === stream).length;
  assert.equal(entries.length, expectedInStream, 'every header-picked stream event is a stream entry');
  assert.equal(jobs.length, EVENTS - expectedInStream, 'every other event is a list job');
  for (const e of entries) assert.equal(kindOf(Number(JSON.parse(e.payload as string).n) * AGGREGATES), 'stream');
  // Within each key, each aggregate's events are in write order (n rising).
  for (const [where, items] of [
    ['list', seen.slice(0, jobs.length)],
    ['stream', seen.slice(jobs.length)],
  ] as const) {
    const last = new Map<string, number>();
    let reordered = 0;
    for (const e of items) {
      if (e.n <= (last.get(e.agg) ?? -1)) reordered++;
      last.set(e.agg, e.n);
    }
    assert.equal(reordered, 0, `per-aggregate order held in the ${where}`);
  }
  t.diagnostic(`${jobs.length} list jobs, ${entries.length} stream entries`);
});

test('with publisher: stream, destination: list sends that event to a list; the aggregate keeps its order', async () => {
  const config = { ...fx.config, outbox: { ...fx.config.outbox, publisher: 'stream' as const } };
  const list = `${fx.prefix}rev:list`;
  const stream = `${fx.prefix}rev:stream`;
  const stored = await storeInOutboxStandalone(
    fx.db.pool,
    [0, 1, 2, 3].map((n) => ({
      aggregateId: 'rev',
      eventType: 'e',
      payload: { n },
      ...(n === 1 ? { headers: { destination: 'list' }, queue: list } : { queue: stream }),
    })),
    config.outbox,
  );
  const relay = new Relay({ config, pool: fx.db.pool, publisher: createPublisher(config, { redis: fx.redis }) });
  // The batch is cut at each switch of kind within the aggregate; the rest waits for the next batch, in order.
  assert.equal((await relay.publishDue()).published, 4);
  assert.equal(await countPending(), 0);
  assert.deepEqual(
    (await fx.jobs(list)).map((j) => j.id),
    [stored[1]?.id],
  );
  assert.deepEqual(
    (await streamEntries(stream)).map((e) => e.id),
    [stored[0]?.id, stored[2]?.id, stored[3]?.id],
  );
});

const countPending = async () =>
  (await fx.db.pool.query("SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'pending'")).rows[0]
    .n as number;

test('a row whose destination header bypassed validation (plain SQL) fails at once, naming the header; its aggregate moves on', async () => {
  const queue = `${fx.prefix}sql:list`;
  const stored = await storeInOutboxStandalone(
    fx.db.pool,
    [0, 1].map((n) => ({ aggregateId: 'sql', eventType: 'e', payload: { n }, queue })),
    fx.config.outbox,
  );
  const [bad, good] = stored.map((e) => e.id);
  await fx.db.pool.query(
    `UPDATE exactly_once_outbox_events SET headers = headers || '{"destination": "kafka"}'::jsonb WHERE id = $1`,
    [bad],
  );
  const relay = fx.relay({ publisher: createPublisher(fx.config, { redis: fx.redis }) });
  const first = await relay.runBatch();
  assert.deepEqual([first.failed, first.held], [1, 1]);
  const states = await eventStates(fx.db.pool, [bad as string]);
  assert.equal(states.get(bad as string)?.status, 'failed', 'no retry can fix it: failed at once');
  assert.match(
    states.get(bad as string)?.lastError ?? '',
    /headers\.destination must be "list" or "stream", got "kafka"/,
  );
  await relay.publishDue();
  assert.deepEqual(
    (await fx.jobs(queue)).map((j) => j.id),
    [good],
  );
});

test('a header that sends an event of the other kind to a queue_pattern key is refused, naming the field', async () => {
  const before = await countRows();
  const stream = { ...fx.config, outbox: { ...fx.config.outbox, publisher: 'stream' as const } };
  for (const [config, destination, queue] of [
    [fx.config, 'stream', undefined], // publisher list: the default list would become a stream
    [fx.config, 'stream', fx.lowQueue], // the same list, named
    [stream, 'list', undefined], // publisher stream: the default stream would get a list
  ] as const) {
    await assert.rejects(
      storeInOutboxStandalone(
        fx.db.pool,
        [
          { aggregateId: 'ok', eventType: 'e', payload: null },
          { aggregateId: 'x', eventType: 'e', payload: null, headers: { destination }, ...(queue ? { queue } : {}) },
        ],
        config.outbox,
      ),
      (err: unknown) =>
        err instanceof OutboxEventValidationError &&
        err.field === 'headers.destination' &&
        err.index === 1 &&
        /outbox\.queue_pattern/.test(err.message),
      `${config.outbox.publisher} publisher, destination ${destination}, queue ${queue}`,
    );
  }
  assert.equal(await countRows(), before, 'nothing of the refused batches was written');
  // The configured kind itself is no change of kind: accepted.
  await storeInOutboxStandalone(
    fx.db.pool,
    { aggregateId: 'same', eventType: 'e', payload: null, headers: { destination: 'stream' } },
    stream.outbox,
  );
  // Test data only (the outbox itself never deletes an event): the next test relays everything that is due.
  await fx.db.pool.query("DELETE FROM exactly_once_outbox_events WHERE aggregate_id = 'same'");
});

test('such a row written past validation fails at once with the reason, and never turns the list into a stream', async () => {
  await fx.redis.del(fx.lowQueue); // workers drained the list: the key is momentarily absent
  // Plain SQL, as a producer outside this library writes (the view's INSERT), past storeInOutbox's checks.
  const { rows } = await fx.db.pool.query<{ id: string }>(
    `INSERT INTO exactly_once_outbox (aggregate_id, event_type, payload, headers)
     VALUES ('sql-stream', 'e', '{"n": 0}', '{"destination": "stream"}'), ('sql-stream', 'e', '{"n": 1}', '{}')
     RETURNING id`,
  );
  const [bad, after] = rows.map((r) => r.id);
  await fx.relay({ publisher: createPublisher(fx.config, { redis: fx.redis }) }).publishDue();
  const states = await eventStates(fx.db.pool, [bad as string, after as string]);
  assert.equal(states.get(bad as string)?.status, 'failed');
  assert.match(states.get(bad as string)?.lastError ?? '', /headers\.destination.*outbox\.queue_pattern/);
  assert.equal(states.get(after as string)?.status, 'published', 'its aggregate moves on');
  assert.equal(await fx.redis.type(fx.lowQueue), 'list', 'the default destination is still a list');
  // Ordinary events keep flowing into it.
  const [plain] = await storeInOutboxStandalone(
    fx.db.pool,
    [{ aggregateId: 'plain', eventType: 'e', payload: {} }],
    fx.config.outbox,
  );
  await fx.relay().publishDue();
  assert.equal((await eventStates(fx.db.pool, [plain?.id as string])).get(plain?.id as string)?.status, 'published');
});
