import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generateIdempotencyKey } from '../src/idempotency/index.js';
import { testRedis, testService } from './helpers/idempotency-env.js';
import { startWorker, type Worker } from './helpers/idempotency-spawn.js';
import { createTestDatabase, deleteRedisPrefix, redisPrefix, type TestDatabase } from './helpers/services.js';

let db: TestDatabase;
const prefix = redisPrefix('idem-concurrent');

before(async () => {
  db = await createTestDatabase('idem_concurrent');
  await db.pool.query('CREATE TABLE effects (id serial PRIMARY KEY, key_id text NOT NULL, pid int NOT NULL)');
});
after(async () => {
  // The workers' hot cache wrote under the prefix.
  const redis = testRedis();
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

// G4: concurrent duplicates across processes run the processor once.
test('50 concurrent calls with one key across 4 processes run the processor once and all get its result', async () => {
  const calls = [13, 12, 13, 12];
  const workers: Worker[] = calls.map((n) =>
    startWorker({
      mode: 'concurrent',
      databaseUrl: db.url,
      keyPrefix: prefix,
      variant: 'database-hot-cache',
      queue: 'payments',
      keySuffix: 'charge-1',
      calls: n,
      waitForGo: true,
      processMs: 300,
      // What is under test is one run among concurrent duplicates, not lease loss (other tests cover that). 49
      // waiters poll through pools of 4 connections on a loaded 2-core CI machine, which once delayed a renewal past
      // a 1 s lease: a lease no real deployment would set.
      lease: '10s',
    }),
  );
  try {
    await Promise.all(workers.map((w) => w.next('ready')));
    for (const w of workers) w.send('go');
    const done = await Promise.all(workers.map((w) => w.next('done')));
    const results = done.flatMap((d) => d.results as Array<{ duplicate?: boolean; result?: unknown; error?: string }>);

    assert.equal(results.length, 50);
    assert.deepEqual(
      results.filter((r) => r.error),
      [],
    );
    const { rows } = await db.pool.query<{ pid: number }>('SELECT pid FROM effects');
    assert.equal(rows.length, 1, 'the processor ran exactly once');
    const ranBy = rows[0]?.pid;
    assert.equal(results.filter((r) => r.duplicate === false).length, 1);
    for (const r of results) assert.deepEqual(r.result, { ranBy });

    // Counted by all four processes, read from a fifth.
    const redis = testRedis();
    const service = testService({ databaseUrl: db.url, keyPrefix: prefix }, { pool: db.pool, redis });
    try {
      const stats = await service.getDedupStats('payments');
      assert.equal(stats.totalRequests, 50);
      assert.equal(stats.duplicatesAvoided, 49);
      assert.equal(stats.totalKeys, 1);
      assert.equal(stats.hitRate, 49 / 50);
      const again = await service.processWithIdempotency(generateIdempotencyKey('payments', '', 'charge-1'), () => {
        throw new Error('must not run');
      });
      assert.deepEqual(again, { duplicate: true, result: { ranBy } });
    } finally {
      await service.close();
      redis.disconnect();
    }
  } finally {
    await Promise.all(workers.map((w) => w.kill()));
  }
});
