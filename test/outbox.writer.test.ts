import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { OutboxEventValidationError, UnsupportedExecutorError } from '../src/errors.js';
import { rowToEvent } from '../src/outbox/postgres/queries.js';
import { storeInOutbox, storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';

let fx: OutboxFixture;

before(async () => {
  fx = await outboxFixture('writer');
  await sql`CREATE TABLE orders (id text PRIMARY KEY, total int NOT NULL)`.execute(fx.kysely);
});
after(async () => {
  await fx.close();
});

describe('storeInOutbox with a Kysely transaction', () => {
  test('a committed event is published once as a go-redis-work-queue job', async () => {
    const stored = await fx.kysely.transaction().execute(async (trx) => {
      await trx.insertInto('orders').values({ id: 'k1', total: 10 }).execute();
      return storeInOutbox(trx, {
        aggregateType: 'order',
        aggregateId: 'k1',
        eventType: 'order.created',
        payload: { orderId: 'k1', filepath: '/data/k1.csv', filesize: 2048 },
        headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
        tenantId: 'acme',
      });
    });
    assert.equal(stored.status, 'pending');
    const summary = await fx.relay().publishDue();
    assert.equal(summary.published, 1);

    const [job, ...rest] = await fx.jobs();
    assert.equal(rest.length, 0);
    assert.deepEqual(
      { ...job, creation_time: undefined },
      {
        id: stored.id,
        filepath: '/data/k1.csv',
        filesize: 2048,
        priority: 'low',
        retries: 0,
        creation_time: undefined,
        trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
        span_id: '00f067aa0ba902b7',
        event_type: 'order.created',
        aggregate_type: 'order',
        aggregate_id: 'k1',
        tenant_id: 'acme',
        payload: { orderId: 'k1', filepath: '/data/k1.csv', filesize: 2048 },
        headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
      },
    );
    assert.match(String(job?.creation_time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.equal(new Date(String(job?.creation_time)).getTime(), stored.createdAt.getTime());

    const row = await fx.db.pool.query('SELECT status FROM exactly_once_outbox WHERE id = $1', [stored.id]);
    assert.equal(row.rows[0].status, 'published');
    // A second drain finds nothing and pushes nothing.
    assert.equal((await fx.relay().publishDue()).claimed, 0);
    assert.equal((await fx.jobs()).length, 1);
  });

  test('a rolled-back event is never published', async () => {
    await fx.redis.del(fx.lowQueue);
    await assert.rejects(
      fx.kysely.transaction().execute(async (trx) => {
        await trx.insertInto('orders').values({ id: 'k2', total: 5 }).execute();
        await storeInOutbox(trx, { aggregateId: 'k2', eventType: 'order.created', payload: {} });
        throw new Error('business rule failed');
      }),
      /business rule failed/,
    );
    assert.equal((await fx.relay().publishDue()).claimed, 0);
    assert.equal(await fx.redis.llen(fx.lowQueue), 0);
    const count = await fx.db.pool.query(
      "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE aggregate_id = 'k2'",
    );
    assert.equal(count.rows[0].n, 0);
  });

  test('priority header and per-event queue choose the list; many events in one call keep their order', async () => {
    const custom = `${fx.prefix}custom-list`;
    const stored = await fx.kysely.transaction().execute((trx) =>
      storeInOutbox(
        trx,
        [
          { aggregateId: 'm', eventType: 'a', payload: 1, headers: { priority: 'high' } },
          { aggregateId: 'm', eventType: 'b', payload: 2, queue: custom },
          { aggregateId: 'm', eventType: 'c', payload: 3 },
        ],
        fx.config.outbox,
      ),
    );
    // Write order is what Postgres recorded (seq), read back, not the writer's echo of its input.
    const { rows } = await fx.db.pool.query(
      'SELECT id, event_type FROM exactly_once_outbox WHERE id = ANY($1::uuid[]) ORDER BY seq',
      [stored.map((e) => e.id)],
    );
    assert.deepEqual(
      rows.map((r) => [r.id, r.event_type]),
      stored.map((e) => [e.id, e.eventType]),
    );
    assert.deepEqual(
      rows.map((r) => r.event_type),
      ['a', 'b', 'c'],
    );
    await fx.relay().publishDue();
    assert.deepEqual(
      (await fx.jobs(fx.highQueue)).map((j) => [j.event_type, j.priority]),
      [['a', 'high']],
    );
    assert.deepEqual(
      (await fx.jobs(custom)).map((j) => j.payload),
      [2],
    );
    assert.ok((await fx.jobs()).some((j) => j.event_type === 'c'));
  });
  test('the returned event is the stored row', async () => {
    const stored = await storeInOutboxStandalone(fx.db.pool, {
      aggregateType: 'order',
      aggregateId: 'ret-1',
      eventType: 'order.created',
      payload: { b: 1, a: [1, 'x'], at: new Date('2026-01-02T03:04:05Z') },
      headers: { priority: 'high' },
      metadata: { source: 'test' },
      tenantId: 't1',
      maxRetries: 2,
    });
    const { rows } = await fx.db.pool.query('SELECT * FROM exactly_once_outbox WHERE id = $1', [stored.id]);
    const row = rows[0];
    assert.deepEqual(stored, rowToEvent(row));
    assert.equal(stored.maxRetries, 2);
    assert.equal((stored.payload as { at: string }).at, '2026-01-02T03:04:05.000Z');
  });
});

describe('storeInOutbox with a pg client', () => {
  test('committed events are published; rolled-back ones never are', async () => {
    const client = new pg.Client({ connectionString: fx.db.url });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query("INSERT INTO orders VALUES ('p1', 1)");
      const kept = await storeInOutbox(client, { aggregateId: 'p1', eventType: 'order.created', payload: { n: 1 } });
      await client.query('COMMIT');

      await client.query('BEGIN');
      await storeInOutbox(client, { aggregateId: 'p2', eventType: 'order.created', payload: { n: 2 } });
      await client.query('ROLLBACK');

      await fx.redis.del(fx.lowQueue);
      await fx.relay().publishDue();
      const jobs = await fx.jobs();
      assert.deepEqual(
        jobs.map((j) => j.id),
        [kept.id],
      );
    } finally {
      await client.end();
    }
  });
});

describe('bad events', () => {
  const cases: [string, unknown, RegExp][] = [
    ['missing aggregateId', { eventType: 'x', payload: {} }, /aggregateId: is required/],
    ['empty eventType', { aggregateId: 'a', eventType: '', payload: {} }, /eventType: is required/],
    ['missing payload', { aggregateId: 'a', eventType: 'x' }, /payload: is required/],
    ['BigInt in payload', { aggregateId: 'a', eventType: 'x', payload: { n: 1n } }, /payload\.n: BigInt/],
    ['function in payload', { aggregateId: 'a', eventType: 'x', payload: { f() {} } }, /payload\.f: a function/],
    ['NaN in payload', { aggregateId: 'a', eventType: 'x', payload: [Number.NaN] }, /payload\[0\]: NaN/],
    ['NUL in payload', { aggregateId: 'a', eventType: 'x', payload: 'a\u0000b' }, /payload: must not contain the NUL/],
    [
      'non-string header',
      { aggregateId: 'a', eventType: 'x', payload: 1, headers: { n: 1 } },
      /headers\.n: must be a string/,
    ],
    [
      'bad priority',
      { aggregateId: 'a', eventType: 'x', payload: 1, headers: { priority: 'urgent' } },
      /headers\.priority/,
    ],
    [
      'typo field',
      { aggregateID: 'a', eventType: 'x', payload: 1 },
      /aggregateID: unknown field \(did you mean aggregateId\?\)/,
    ],
    ['bad id', { id: 'nope', aggregateId: 'a', eventType: 'x', payload: 1 }, /id: must be a UUID/],
    ['negative maxRetries', { aggregateId: 'a', eventType: 'x', payload: 1, maxRetries: -1 }, /maxRetries/],
  ];
  for (const [name, event, message] of cases) {
    test(`${name}: typed error naming the field, nothing written`, async () => {
      const before = await fx.db.pool.query('SELECT count(*)::int AS n FROM exactly_once_outbox');
      await assert.rejects(
        fx.kysely.transaction().execute((trx) => storeInOutbox(trx, event as never)),
        (err: unknown) => err instanceof OutboxEventValidationError && message.test(err.message),
      );
      const afterCount = await fx.db.pool.query('SELECT count(*)::int AS n FROM exactly_once_outbox');
      assert.equal(afterCount.rows[0].n, before.rows[0].n);
    });
  }

  test('circular payload is rejected', async () => {
    const payload: Record<string, unknown> = {};
    payload.self = payload;
    await assert.rejects(
      storeInOutboxStandalone(fx.db.pool, { aggregateId: 'a', eventType: 'x', payload }),
      /payload\.self: contains a circular reference/,
    );
  });

  test('one bad event in a batch writes none of the batch and names its index', async () => {
    await assert.rejects(
      storeInOutboxStandalone(fx.db.pool, [
        { aggregateId: 'ok', eventType: 'x', payload: 1 },
        { aggregateId: 'bad', eventType: 'x', payload: undefined },
      ]),
      /events\[1\]\.payload: is required/,
    );
    const n = await fx.db.pool.query("SELECT count(*)::int AS n FROM exactly_once_outbox WHERE aggregate_id = 'ok'");
    assert.equal(n.rows[0].n, 0);
  });

  test('something that is not a transaction is rejected', async () => {
    await assert.rejects(
      storeInOutbox({} as never, { aggregateId: 'a', eventType: 'x', payload: 1 }),
      UnsupportedExecutorError,
    );
  });
});
