import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql, type Transaction } from 'kysely';
import pg from 'pg';
import { rowToEvent } from '../src/outbox/postgres/queries.js';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { MAX_JSON_DEPTH } from '../src/outbox/validate-event.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';

// G6: bad events get a typed error naming the field before anything is written, and the caller's transaction stays
// usable (a raw Postgres error would have aborted it: every later statement fails with 25P02).

let fx: OutboxFixture;

before(async () => {
  fx = await outboxFixture('writer_validation');
  await sql`CREATE TABLE orders (id text PRIMARY KEY)`.execute(fx.kysely);
});
after(async () => {
  await fx.close();
});

async function storedRow(id: string) {
  const { rows } = await fx.db.pool.query('SELECT * FROM exactly_once_outbox WHERE id = $1', [id]);
  assert.equal(rows.length, 1, `row ${id} stored`);
  return rowToEvent(rows[0]);
}

async function outboxCount(aggregateId: string): Promise<number> {
  const { rows } = await fx.db.pool.query(
    'SELECT count(*)::int AS n FROM exactly_once_outbox WHERE aggregate_id = $1',
    [aggregateId],
  );
  return rows[0].n;
}

interface TypedError extends Error {
  code?: string;
  field?: string;
  index?: number;
  id?: string;
}

/**
 * Runs `attempt` inside an app transaction, expects it to throw, then proves the transaction is still usable by
 * writing a business row and committing. Returns the error.
 */
async function rejectsKeepingTransaction(
  orderId: string,
  attempt: (trx: Transaction<Record<string, never>>) => Promise<unknown>,
): Promise<TypedError> {
  let caught: TypedError | undefined;
  await fx.kysely.transaction().execute(async (trx) => {
    try {
      await attempt(trx);
    } catch (err) {
      caught = err as TypedError;
    }
    await trx.insertInto('orders').values({ id: orderId }).execute();
  });
  assert.ok(caught, 'storeInOutbox threw');
  const { rows } = await fx.db.pool.query('SELECT count(*)::int AS n FROM orders WHERE id = $1', [orderId]);
  assert.equal(rows[0].n, 1, 'the caller committed its own row after the error');
  return caught;
}

const base = (aggregateId: string): NewOutboxEvent => ({ aggregateId, eventType: 'e', payload: {} });

describe('event ids', () => {
  test('an uppercase UUID is stored lower-cased and the returned event is the stored row', async () => {
    const upper = '0190A3C4-5D6E-7F80-9A1B-2C3D4E5F6A7B';
    const stored = await fx.kysely.transaction().execute((trx) => storeInOutbox(trx, { ...base('upper'), id: upper }));
    assert.equal(stored.id, upper.toLowerCase());
    assert.deepEqual(stored, await storedRow(stored.id));
  });

  test('the same id twice in one batch: typed error naming the id and both indexes, nothing written', async () => {
    const id = '0190a3c4-5d6e-7f80-9a1b-000000000001';
    const err = await rejectsKeepingTransaction('dup-batch', (trx) =>
      storeInOutbox(trx, [
        { ...base('dup-batch'), id },
        base('dup-batch'),
        { ...base('dup-batch'), id: id.toUpperCase() },
      ]),
    );
    assert.equal(err.code, 'EO_OUTBOX_DUPLICATE_ID', err.message);
    assert.equal(err.id, id);
    assert.equal(err.index, 2);
    assert.equal(err.field, 'id');
    assert.match(err.message, /events\[2\]\.id: .*0190a3c4-5d6e-7f80-9a1b-000000000001.*events\[0\]/);
    assert.equal(await outboxCount('dup-batch'), 0);
  });

  test('an id already in the outbox: typed error naming it, the caller transaction survives, nothing written', async () => {
    const existing = await fx.kysely.transaction().execute((trx) => storeInOutbox(trx, base('dup-existing-first')));
    const err = await rejectsKeepingTransaction('dup-existing', (trx) =>
      storeInOutbox(trx, [base('dup-existing'), { ...base('dup-existing'), id: existing.id }]),
    );
    assert.equal(err.code, 'EO_OUTBOX_DUPLICATE_ID', err.message);
    assert.equal(err.id, existing.id);
    assert.equal(err.index, 1);
    assert.match(err.message, /already in the outbox/);
    assert.equal(await outboxCount('dup-existing'), 0);
  });

  test('an id written by a concurrent transaction that commits first: typed error, nothing of the batch kept', async () => {
    const id = '0190a3c4-5d6e-7f80-9a1b-000000000002';
    const other = new pg.Client({ connectionString: fx.db.url });
    await other.connect();
    try {
      await other.query('BEGIN');
      await storeInOutbox(other, { ...base('race-winner'), id });
      // Our INSERT waits on the other transaction's uncommitted row; once it commits, ours must not half-write.
      const ours = rejectsKeepingTransaction('race-loser', (trx) =>
        storeInOutbox(trx, [base('race-loser'), { ...base('race-loser'), id }, base('race-loser')]),
      );
      await waitForLockWait();
      await other.query('COMMIT');
      const err = await ours;
      assert.equal(err.code, 'EO_OUTBOX_DUPLICATE_ID', err.message);
      assert.equal(err.id, id);
      assert.equal(await outboxCount('race-loser'), 0);
      assert.equal(await outboxCount('race-winner'), 1);
    } finally {
      await other.end();
    }
  });

  test('one event whose id a concurrent transaction commits first (the one-row statement): typed error', async () => {
    const id = '0190a3c4-5d6e-7f80-9a1b-000000000003';
    const other = new pg.Client({ connectionString: fx.db.url });
    await other.connect();
    try {
      await other.query('BEGIN');
      await storeInOutbox(other, { ...base('single-race-winner'), id });
      const ours = rejectsKeepingTransaction('single-race-loser', (trx) =>
        storeInOutbox(trx, { ...base('single-race-loser'), id }),
      );
      await waitForLockWait();
      await other.query('COMMIT');
      const err = await ours;
      assert.equal(err.code, 'EO_OUTBOX_DUPLICATE_ID', err.message);
      assert.equal(err.id, id);
      assert.equal(err.index, undefined, 'a single event has no index');
      assert.equal(await outboxCount('single-race-loser'), 0);
      assert.equal(await outboxCount('single-race-winner'), 1);
    } finally {
      await other.end();
    }
  });

  test('with a pg client in BEGIN, a duplicate id leaves the transaction usable', async () => {
    const existing = await fx.kysely.transaction().execute((trx) => storeInOutbox(trx, base('pg-dup-first')));
    const client = new pg.Client({ connectionString: fx.db.url });
    await client.connect();
    try {
      await client.query('BEGIN');
      await assert.rejects(storeInOutbox(client, { ...base('pg-dup'), id: existing.id }), {
        code: 'EO_OUTBOX_DUPLICATE_ID',
      });
      await client.query("INSERT INTO orders VALUES ('pg-dup')");
      await client.query('COMMIT');
    } finally {
      await client.end();
    }
    assert.equal(await outboxCount('pg-dup'), 0);
    const { rows } = await fx.db.pool.query("SELECT count(*)::int AS n FROM orders WHERE id = 'pg-dup'");
    assert.equal(rows[0].n, 1);
  });
});

/** Until some backend waits on a transaction lock (our INSERT queued behind the other transaction's row). */
async function waitForLockWait(): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await fx.db.pool.query(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    );
    if (rows[0].n > 0) return;
    if (Date.now() > deadline) throw new Error('the INSERT never waited on the concurrent transaction');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const LONE = '\ud800';
const deep = (depth: number): unknown => {
  let v: unknown = 'leaf';
  for (let i = 0; i < depth; i++) v = { n: v };
  return v;
};

describe('values Postgres cannot store, or would store differently: OutboxEventValidationError naming the field', () => {
  const cases: [string, Partial<NewOutboxEvent> | Record<string, unknown>, string][] = [
    ['lone surrogate in a payload value', { payload: { name: `a${LONE}` } }, 'payload.name'],
    ['lone surrogate in a payload key', { payload: { [`k${LONE}`]: 1 } }, `payload["k\\ud800"]`],
    ['lone surrogate deep in a payload array', { payload: { list: ['ok', `\udc00x`] } }, 'payload.list[1]'],
    ['lone surrogate in a header value', { headers: { note: LONE } }, 'headers.note'],
    ['lone surrogate in a header key', { headers: { [LONE]: 'v' } }, 'headers["\\ud800"]'],
    ['lone surrogate in a metadata value', { metadata: { by: LONE } }, 'metadata.by'],
    ['lone surrogate in a metadata key', { metadata: { [LONE]: 1 } }, 'metadata["\\ud800"]'],
    ['lone surrogate in aggregateId (would be stored as U+FFFD)', { aggregateId: `order-${LONE}` }, 'aggregateId'],
    ['lone surrogate in aggregateType', { aggregateType: LONE }, 'aggregateType'],
    ['lone surrogate in eventType', { eventType: `e${LONE}` }, 'eventType'],
    ['lone surrogate in tenantId', { tenantId: LONE }, 'tenantId'],
    ['lone surrogate in queue', { queue: `jobqueue:low_priority${LONE}` }, 'queue'],
    ['NUL in a payload key', { payload: { 'a\u0000b': 1 } }, 'payload["a\\u0000b"]'],
    ['NUL in a header key', { headers: { 'x\u0000': 'v' } }, 'headers["x\\u0000"]'],
    ['NUL in a metadata key', { metadata: { '\u0000': 1 } }, 'metadata["\\u0000"]'],
    ['NUL in a header value', { headers: { note: 'a\u0000' } }, 'headers.note'],
    ['NUL in eventType', { eventType: 'e\u0000' }, 'eventType'],
    ['NUL in aggregateId', { aggregateId: 'a\u0000' }, 'aggregateId'],
    ['NUL in aggregateType', { aggregateType: 'a\u0000' }, 'aggregateType'],
    ['NUL in tenantId', { tenantId: 't\u0000' }, 'tenantId'],
    ['NUL in queue', { queue: 'jobqueue:low_priority\u0000' }, 'queue'],
    ['maxRetries beyond the integer column (2**31)', { maxRetries: 2 ** 31 }, 'maxRetries'],
    ['payload nested 5,000 deep', { payload: deep(5000) }, 'payload'],
    ['metadata nested 5,000 deep', { metadata: deep(5000) as Record<string, unknown> }, 'metadata'],
    ['a Map in the payload (JSON makes it {})', { payload: { m: new Map([['a', 1]]) } }, 'payload.m'],
    ['a Set in the payload (JSON makes it {})', { payload: { s: new Set([1]) } }, 'payload.s'],
    ['a Map as the whole payload', { payload: new Map() }, 'payload'],
    ['an invalid Date (JSON makes it null)', { payload: { at: new Date(Number.NaN) } }, 'payload.at'],
    ['a typed array (JSON makes it an object of indexes)', { payload: { b: new Uint8Array([1]) } }, 'payload.b'],
    ['a RegExp (JSON makes it {})', { payload: { r: /x/ } }, 'payload.r'],
  ];
  for (const [name, patch, field] of cases) {
    test(`${name} → ${field}`, async () => {
      const aggregateId = `bad-${name}`.replace(/[^\w-]/g, '_');
      const err = await rejectsKeepingTransaction(aggregateId, (trx) =>
        storeInOutbox(trx, { ...base(aggregateId), ...patch } as NewOutboxEvent),
      );
      assert.equal(err.code, 'EO_OUTBOX_INVALID_EVENT', `${err.name}: ${err.message}`);
      const fieldRoot = field.replace(/[[.].*$/, '');
      assert.ok(err.field === field || err.field?.startsWith(fieldRoot), `field ${err.field} names ${field}`);
      assert.ok(err.message.startsWith(`${field}`), `message "${err.message}" starts with ${field}`);
      assert.equal(await outboxCount(aggregateId), 0);
    });
  }

  test('maxRetries 2**31 - 1 is the largest accepted', async () => {
    const stored = await fx.kysely
      .transaction()
      .execute((trx) => storeInOutbox(trx, { ...base('max-retries'), maxRetries: 2 ** 31 - 1 }));
    assert.deepEqual(stored, await storedRow(stored.id));
  });

  test('nesting up to the documented depth (100) is stored as written; 101 is refused', async () => {
    const stored = await fx.kysely
      .transaction()
      .execute((trx) => storeInOutbox(trx, { ...base('deep-ok'), payload: deep(MAX_JSON_DEPTH) }));
    assert.equal(MAX_JSON_DEPTH, 100);
    assert.deepEqual(stored, await storedRow(stored.id));
    assert.deepEqual(stored.payload, deep(100));
    // Exactly one level too many, objects only and through an array: 101 levels each, not more (an off-by-one in
    // the limit would accept them).
    const err = await rejectsKeepingTransaction('deep-101', (trx) =>
      storeInOutbox(trx, { ...base('deep-101'), payload: deep(MAX_JSON_DEPTH + 1) }),
    );
    assert.equal(err.code, 'EO_OUTBOX_INVALID_EVENT');
    assert.match(err.message, /^payload(\.n){100}: nests deeper than 100 levels/);
    const inList = await rejectsKeepingTransaction('deep-101-list', (trx) =>
      storeInOutbox(trx, { ...base('deep-101-list'), payload: { list: [deep(MAX_JSON_DEPTH - 1)] } }),
    );
    assert.equal(inList.code, 'EO_OUTBOX_INVALID_EVENT');
    assert.match(inList.message, /^payload\.list\[0\](\.n){98}: nests deeper than 100 levels/);
  });

  test('a Date, well-formed emoji and other JSON values round-trip: the returned event is the stored row', async () => {
    const stored = await fx.kysely.transaction().execute((trx) =>
      storeInOutbox(trx, {
        aggregateId: 'round-trip-😀',
        aggregateType: 'tÿpe',
        eventType: 'e',
        payload: {
          at: new Date('2026-01-02T03:04:05.678Z'),
          emoji: '😀',
          big: 1e21,
          tiny: 5e-324,
          neg: -0,
          list: [1, null],
        },
        headers: { 'x-note': 'ümlaut 😀' },
        metadata: { nested: { ok: true } },
        tenantId: 'acme',
      }),
    );
    const row = await storedRow(stored.id);
    assert.deepEqual(stored, row);
    assert.equal((row.payload as { at: string }).at, '2026-01-02T03:04:05.678Z');
  });
});
