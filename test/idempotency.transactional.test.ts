import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { IdempotencyTransactionUnsupportedError } from '../src/errors.js';
import { generateIdempotencyKey, type IdempotencyService } from '../src/idempotency/index.js';
import { testRedis, testService } from './helpers/idempotency-env.js';
import { startWorker } from './helpers/idempotency-spawn.js';
import { createTestDatabase, deleteRedisPrefix, redisPrefix, type TestDatabase } from './helpers/services.js';

let db: TestDatabase;
let service: IdempotencyService;
const prefix = redisPrefix('idem-tx');
const redis = testRedis();

before(async () => {
  db = await createTestDatabase('idem_tx');
  await db.pool.query('CREATE TABLE effects (id serial PRIMARY KEY, key_id text NOT NULL, pid int NOT NULL)');
  service = testService({ databaseUrl: db.url, keyPrefix: prefix }, { pool: db.pool, redis });
});
after(async () => {
  await service.close();
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

const effects = async (keyId?: string) => {
  const { rows } = await db.pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM effects WHERE $1::text IS NULL OR key_id = $1',
    [keyId ?? null],
  );
  return Number(rows[0]?.n);
};

/** The redelivery: the same job processed again in this process. */
const redeliver = (suffix: string) => {
  const key = generateIdempotencyKey('billing', '', suffix);
  return service.processInTransaction(key, async (trx) => {
    await trx.insertInto('effects').values({ key_id: key.id, pid: process.pid }).execute();
    return { ranBy: process.pid };
  });
};

// G4: the transactional form commits the effect and the key together (workers killed before and after COMMIT).
test('worker killed after its writes but before COMMIT: nothing visible, the redelivery runs it', async () => {
  const worker = startWorker({
    mode: 'tx-hang-before-commit',
    databaseUrl: db.url,
    keyPrefix: prefix,
    variant: 'database-hot-cache',
    queue: 'billing',
    keySuffix: 'invoice-1',
  });
  try {
    await worker.next('written');
    assert.equal(await effects(), 0, 'uncommitted writes are invisible');
    await worker.kill();
    const r = await redeliver('invoice-1');
    assert.deepEqual(r, { duplicate: false, result: { ranBy: process.pid } });
    assert.equal(await effects('billing::invoice-1'), 1);
  } finally {
    await worker.kill();
  }
});

test('worker killed after COMMIT: the redelivery is a duplicate with the committed result', async () => {
  const worker = startWorker({
    mode: 'tx-hang-after-commit',
    databaseUrl: db.url,
    keyPrefix: prefix,
    variant: 'database-hot-cache',
    queue: 'billing',
    keySuffix: 'invoice-2',
  });
  try {
    await worker.next('committed');
    await worker.kill();
    const r = await redeliver('invoice-2');
    assert.deepEqual(r, { duplicate: true, result: { ranBy: worker.child.pid } });
    assert.equal(await effects('billing::invoice-2'), 1);
  } finally {
    await worker.kill();
  }
});

test('concurrent transactional duplicates: one commits, the others wait and get its result', async () => {
  const results = await Promise.all(Array.from({ length: 8 }, () => redeliver('invoice-3')));
  assert.equal(results.filter((r) => !r.duplicate).length, 1);
  for (const r of results) assert.deepEqual(r.result, { ranBy: process.pid });
  assert.equal(await effects('billing::invoice-3'), 1);
});

test('a processor error rolls back its writes and releases the key; the retry runs', async () => {
  const key = generateIdempotencyKey('billing', '', 'invoice-4');
  await assert.rejects(
    service.processInTransaction(key, async (trx) => {
      await trx.insertInto('effects').values({ key_id: key.id, pid: process.pid }).execute();
      throw new Error('card declined');
    }),
    /card declined/,
  );
  assert.equal(await effects(key.id), 0);
  assert.equal(await service.getRecord('billing', '', key.id), undefined);
  assert.equal((await redeliver('invoice-4')).duplicate, false);
  assert.equal((await redeliver('invoice-4')).duplicate, true);
});

test('the effect row count equals the number of distinct keys after many redeliveries', async () => {
  const suffixes = ['invoice-1', 'invoice-2', 'invoice-3', 'invoice-4', 'invoice-5', 'invoice-6'];
  await Promise.all(suffixes.flatMap((s) => [redeliver(s), redeliver(s), redeliver(s)]));
  assert.equal(await effects(), suffixes.length);
});

test('the transactional form refuses a store that cannot share the transaction', async () => {
  const memory = testService({ databaseUrl: db.url, keyPrefix: prefix, variant: 'memory' });
  try {
    await assert.rejects(
      memory.processInTransaction(generateIdempotencyKey('billing', '', 'x'), async () => 1),
      IdempotencyTransactionUnsupportedError,
    );
  } finally {
    await memory.close();
  }
});
