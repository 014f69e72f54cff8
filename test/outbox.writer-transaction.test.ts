import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { fromKysely, fromPg } from '../src/db/executor.js';
import { storeInOutbox, storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';

// G1: an event whose transaction rolled back is never published. A pg Pool or a root Kysely runs each statement on
// whichever connection is free, in autocommit, so an event written through one escapes the app's transaction.

let fx: OutboxFixture;

before(async () => {
  fx = await outboxFixture('writer_trx');
  await sql`CREATE TABLE orders (id text PRIMARY KEY, total int NOT NULL)`.execute(fx.kysely);
});
after(async () => {
  await fx.close();
});

async function outboxCount(aggregateId: string): Promise<number> {
  const { rows } = await fx.db.pool.query(
    'SELECT count(*)::int AS n FROM exactly_once_outbox WHERE aggregate_id = $1',
    [aggregateId],
  );
  return rows[0].n;
}

describe('storeInOutbox refuses handles that autocommit (G1)', () => {
  test('the pool, used inside an app transaction that rolls back: refused, nothing published', async () => {
    await assert.rejects(
      fx.kysely.transaction().execute(async (trx) => {
        await trx.insertInto('orders').values({ id: 'pool-rb', total: 1 }).execute();
        await storeInOutbox(fx.db.pool, { aggregateId: 'pool-rb', eventType: 'order.created', payload: {} });
        throw new Error('business rule failed');
      }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'EO_OUTBOX_TRANSACTION_REQUIRED', err.message);
        assert.match(err.message, /pg Pool/);
        assert.match(err.message, /storeInOutboxStandalone/);
        return true;
      },
    );
    assert.equal(await outboxCount('pool-rb'), 0);
    assert.equal((await fx.relay().publishDue()).published, 0);
    assert.equal(await fx.redis.llen(fx.lowQueue), 0);
  });

  test('the root Kysely instance, used inside an app transaction that rolls back: refused, nothing published', async () => {
    await assert.rejects(
      fx.kysely.transaction().execute(async (trx) => {
        await trx.insertInto('orders').values({ id: 'db-rb', total: 1 }).execute();
        await storeInOutbox(fx.kysely, { aggregateId: 'db-rb', eventType: 'order.created', payload: {} });
        throw new Error('business rule failed');
      }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'EO_OUTBOX_TRANSACTION_REQUIRED', err.message);
        assert.match(err.message, /Kysely instance/);
        assert.match(err.message, /db\.transaction\(\)/);
        return true;
      },
    );
    assert.equal(await outboxCount('db-rb'), 0);
    assert.equal((await fx.relay().publishDue()).published, 0);
    assert.equal(await fx.redis.llen(fx.lowQueue), 0);
  });
});

describe('handles that share the caller transaction are accepted', () => {
  test('a PoolClient after BEGIN: committed once COMMIT runs, gone on ROLLBACK', async () => {
    const client = await fx.db.pool.connect();
    try {
      await client.query('BEGIN');
      await storeInOutbox(client, { aggregateId: 'pc-rb', eventType: 'e', payload: {} });
      await client.query('ROLLBACK');
      await client.query('BEGIN');
      await storeInOutbox(client, { aggregateId: 'pc-ok', eventType: 'e', payload: {} });
      assert.equal(await outboxCount('pc-ok'), 0, 'invisible to others before COMMIT');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    assert.equal(await outboxCount('pc-rb'), 0);
    assert.equal(await outboxCount('pc-ok'), 1);
  });

  test('executors built with fromKysely/fromPg: accepted on a transaction, refused on a pool or root Kysely', async () => {
    await fx.kysely
      .transaction()
      .execute((trx) => storeInOutbox(fromKysely(trx), { aggregateId: 'exec-trx', eventType: 'e', payload: {} }));
    assert.equal(await outboxCount('exec-trx'), 1);
    for (const wrapped of [fromPg(fx.db.pool), fromKysely(fx.kysely)]) {
      await assert.rejects(storeInOutbox(wrapped, { aggregateId: 'exec-pool', eventType: 'e', payload: {} }), {
        code: 'EO_OUTBOX_TRANSACTION_REQUIRED',
      });
    }
    assert.equal(await outboxCount('exec-pool'), 0);
  });
});

describe('storeInOutboxStandalone: events on their own, in a transaction of their own', () => {
  test('with the pool and with the root Kysely: committed and published', async () => {
    const viaPool = await storeInOutboxStandalone(fx.db.pool, { aggregateId: 'alone', eventType: 'pool', payload: {} });
    const viaDb = await storeInOutboxStandalone(fx.kysely, [
      { aggregateId: 'alone', eventType: 'db-1', payload: {} },
      { aggregateId: 'alone', eventType: 'db-2', payload: {} },
    ]);
    assert.equal(await outboxCount('alone'), 3);
    await fx.relay().publishDue();
    assert.deepEqual(
      (await fx.jobs()).filter((j) => j.aggregate_id === 'alone').map((j) => j.id),
      [viaPool.id, ...viaDb.map((e) => e.id)],
    );
  });

  test('all or nothing: a batch with a taken id writes none of its events', async () => {
    const first = await storeInOutboxStandalone(fx.db.pool, { aggregateId: 'alone-dup', eventType: 'e', payload: {} });
    for (const handle of [fx.db.pool, fx.kysely]) {
      await assert.rejects(
        storeInOutboxStandalone(handle, [
          { aggregateId: 'alone-dup-batch', eventType: 'e', payload: {} },
          { aggregateId: 'alone-dup-batch', eventType: 'e', payload: {}, id: first.id },
        ]),
        { code: 'EO_OUTBOX_DUPLICATE_ID', id: first.id, index: 1 },
      );
    }
    assert.equal(await outboxCount('alone-dup-batch'), 0);
    // The pool's connections went back usable (a failed transaction was rolled back, not left open).
    const { rows } = await fx.db.pool.query('SELECT 1 AS ok');
    assert.equal(rows[0].ok, 1);
  });

  test('refuses a transaction or a client: it would commit (or nest in) the caller transaction', async () => {
    await fx.kysely.transaction().execute(async (trx) => {
      await assert.rejects(storeInOutboxStandalone(trx, { aggregateId: 'alone-no', eventType: 'e', payload: {} }), {
        code: 'EO_UNSUPPORTED_EXECUTOR',
        message: /storeInOutbox\(trx, events\)/,
      });
    });
    const client = await fx.db.pool.connect();
    try {
      await assert.rejects(storeInOutboxStandalone(client, { aggregateId: 'alone-no', eventType: 'e', payload: {} }), {
        code: 'EO_UNSUPPORTED_EXECUTOR',
      });
    } finally {
      client.release();
    }
    assert.equal(await outboxCount('alone-no'), 0);
  });
});
