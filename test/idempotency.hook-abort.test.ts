import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { IdempotencyHookAbortedError } from '../src/errors.js';
import { generateIdempotencyKey, type IdempotencyService } from '../src/idempotency/index.js';
import { type StorageVariant, testRedis, testService } from './helpers/idempotency-env.js';
import { createTestDatabase, deleteRedisPrefix, redisPrefix, type TestDatabase } from './helpers/services.js';

// The reference document's (docs/reference-api.md) BeforeProcessing returns an error that aborts processing; here it used to be logged and
// swallowed, so a hook could not veto a job. Now the throwing hook aborts the call and the key is released.

let db: TestDatabase;
const redis = testRedis();
const prefixes: string[] = [];

before(async () => {
  db = await createTestDatabase('idem_hook_abort');
});
after(async () => {
  for (const p of prefixes) await deleteRedisPrefix(redis, p);
  redis.disconnect();
  await db.close();
});

const isAbort = (message: string) => (err: unknown) =>
  err instanceof IdempotencyHookAbortedError &&
  err.code === 'EO_IDEMPOTENCY_HOOK_ABORTED' &&
  err.cause instanceof Error &&
  err.cause.message === message;

const variants: StorageVariant[] = ['memory', 'redis', 'database-hot-cache'];
for (const variant of variants) {
  describe(`store: ${variant}`, () => {
    let service: IdempotencyService;
    const queue = `hooks-${variant}`;
    let paused = true;
    const calls: string[] = [];

    before(() => {
      const prefix = redisPrefix(`idem-hook-${variant}`);
      prefixes.push(prefix);
      service = testService({ databaseUrl: db.url, keyPrefix: prefix, variant }, { pool: db.pool, redis });
      service.registerHook({
        beforeProcessing: async (jobId) => {
          calls.push(`veto? ${jobId}`);
          if (paused) throw new Error('tenant paused');
        },
      });
      service.registerHook({
        beforeProcessing: (jobId) => {
          calls.push(`second ${jobId}`);
        },
        afterProcessing: (jobId, _result, error) => {
          calls.push(`after ${jobId} ${error ? 'error' : 'ok'}`);
        },
      });
    });
    after(() => service.close());

    test('a throwing beforeProcessing aborts: typed error with cause, no run, key released; the retry runs', async () => {
      paused = true;
      calls.length = 0;
      const key = generateIdempotencyKey(queue, '', 'job-1');
      let runs = 0;
      const processor = async () => {
        runs++;
        return 'ran';
      };
      await assert.rejects(service.processWithIdempotency(key, processor), isAbort('tenant paused'));
      assert.equal(runs, 0, 'the processor did not run');
      assert.deepEqual(calls, [`veto? ${key.id}`], 'later hooks (and afterProcessing) did not run');
      assert.equal(await service.getRecord(queue, '', key.id), undefined, 'the key was released');

      paused = false;
      assert.deepEqual(await service.processWithIdempotency(key, processor), { duplicate: false, result: 'ran' });
      assert.equal(runs, 1);
    });

    if (variant.startsWith('database')) {
      test('the transactional form: the abort rolls the claim back with the transaction', async () => {
        paused = true;
        const key = generateIdempotencyKey(queue, '', 'job-tx');
        let runs = 0;
        const processor = async () => {
          runs++;
          return 'ran';
        };
        await assert.rejects(service.processInTransaction(key, processor), isAbort('tenant paused'));
        assert.equal(runs, 0);
        const { rows } = await db.pool.query('SELECT 1 FROM idempotency_keys WHERE key_id = $1', [key.id]);
        assert.equal(rows.length, 0, 'nothing of the key was committed');
        paused = false;
        assert.deepEqual(await service.processInTransaction(key, processor), { duplicate: false, result: 'ran' });
        assert.equal(runs, 1);
      });
    }
  });
}
