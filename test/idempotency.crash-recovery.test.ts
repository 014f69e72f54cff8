import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { IdempotencyInProgressError } from '../src/errors.js';
import { generateIdempotencyKey } from '../src/idempotency/index.js';
import { testRedis, testService } from './helpers/idempotency-env.js';
import { startWorker } from './helpers/idempotency-spawn.js';
import { createTestDatabase, deleteRedisPrefix, redisPrefix, type TestDatabase } from './helpers/services.js';

let db: TestDatabase;
const prefix = redisPrefix('idem-crash');
const redis = testRedis();

before(async () => {
  db = await createTestDatabase('idem_crash');
  await db.pool.query('CREATE TABLE effects (id serial PRIMARY KEY, key_id text NOT NULL, pid int NOT NULL)');
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

// G5: a claimant SIGKILLed mid-processor loses its key after the lease; the redelivery runs.
test('a SIGKILLed claimant is taken over after the lease, once, and never again', async () => {
  const worker = startWorker({
    mode: 'hang',
    databaseUrl: db.url,
    keyPrefix: prefix,
    variant: 'database-hot-cache',
    queue: 'imports',
    keySuffix: 'file-7',
  });
  // lease 1s (the worker's too): recovery must take about a second, not hours.
  const service = testService({ databaseUrl: db.url, keyPrefix: prefix, lease: '1s' }, { pool: db.pool, redis });
  const key = generateIdempotencyKey('imports', '', 'file-7');
  let runs = 0;
  const processor = async () => {
    runs++;
    await db.pool.query('INSERT INTO effects (key_id, pid) VALUES ($1, $2)', [key.id, process.pid]);
    return { importedBy: process.pid };
  };
  try {
    await worker.next('claimed');

    // While the claimant is alive its lease is renewed: a duplicate waits and gives up, without running.
    await assert.rejects(
      service.processWithIdempotency(key, processor, { waitTimeoutMs: 1500 }),
      IdempotencyInProgressError,
    );
    assert.equal(runs, 0, 'a live claim (lease renewed past its 1s) blocks duplicates');

    await worker.kill();
    const killedAt = Date.now();
    // How much of the dead worker's lease was left, and when it ends, both on Postgres's clock (the store's own).
    const { rows: held } = await db.pool.query<{ leftMs: number; until: Date }>(
      `SELECT (extract(epoch FROM lease_expires_at - now()) * 1000)::int AS "leftMs", lease_expires_at AS until
       FROM idempotency_keys WHERE key_id = $1 AND status = 'in_progress'`,
      [key.id],
    );
    const lease = held[0];
    assert.ok(lease && lease.leftMs > 0, `the killed worker still held a live lease: ${JSON.stringify(lease)}`);
    const first = await service.processWithIdempotency(key, processor, { waitTimeoutMs: 5000 });
    const recoveredAfter = Date.now() - killedAt;
    assert.deepEqual(first, { duplicate: false, result: { importedBy: process.pid } });
    // Lower bound: the takeover waited for the lease to end, never earlier (the lease was honoured). Upper bound:
    // recovery takes about one lease (1s), not hours.
    const record = await service.getRecord('imports', '', key.id);
    assert.ok(
      record && record.createdAt >= lease.until,
      `claimed at ${record?.createdAt.toISOString()}, lease until ${lease.until.toISOString()}`,
    );
    assert.ok(
      recoveredAfter >= lease.leftMs - 50,
      `recovered after ${recoveredAfter} ms, lease had ${lease.leftMs} ms left`,
    );
    assert.ok(recoveredAfter < 3000, `recovered after ${recoveredAfter} ms`);

    for (let i = 0; i < 3; i++) {
      const again = await service.processWithIdempotency(key, processor);
      assert.deepEqual(again, { duplicate: true, result: { importedBy: process.pid } });
    }
    assert.equal(runs, 1);
    const { rows } = await db.pool.query<{ pid: number }>('SELECT pid FROM effects ORDER BY id');
    assert.deepEqual(
      rows.map((r) => r.pid),
      [worker.child.pid, process.pid],
      'the killed run and the one takeover, nothing more',
    );
  } finally {
    await worker.kill();
    await service.close();
  }
});
