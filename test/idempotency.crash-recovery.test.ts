import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { IdempotencyInProgressError } from '../src/errors.js';
import { generateIdempotencyKey } from '../src/idempotency/index.js';
import { testRedis, testService } from './helpers/idempotency-env.js';
import { startWorker } from './helpers/idempotency-spawn.js';
import { createTestDatabase, redisPrefix, type TestDatabase } from './helpers/services.js';

let db: TestDatabase;
const prefix = redisPrefix('idem-crash');
const redis = testRedis();

before(async () => {
  db = await createTestDatabase('idem_crash');
  await db.pool.query('CREATE TABLE effects (id serial PRIMARY KEY, key_id text NOT NULL, pid int NOT NULL)');
});
after(async () => {
  redis.disconnect();
  await db.close();
});

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
    const first = await service.processWithIdempotency(key, processor, { waitTimeoutMs: 5000 });
    const recoveredAfter = Date.now() - killedAt;
    assert.deepEqual(first, { duplicate: false, result: { importedBy: process.pid } });
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
