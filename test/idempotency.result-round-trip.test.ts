import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { IdempotencyKeyInvalidError } from '../src/errors.js';
import { generateIdempotencyKey, type IdempotencyService } from '../src/idempotency/index.js';
import { STORAGE_VARIANTS, testRedis, testService } from './helpers/idempotency-env.js';
import { createTestDatabase, deleteRedisPrefix, redisPrefix, type TestDatabase } from './helpers/services.js';

// G4: a processor that ran must complete its key, whatever JSON its result holds. Results with text Postgres jsonb
// cannot hold (NUL, lone surrogates: easy to get from `.slice()` on an emoji) used to fail the completion with a
// storage error, leave the key in progress and let the next delivery run the processor again.

let db: TestDatabase;
const redis = testRedis();
const prefixes: string[] = [];

before(async () => {
  db = await createTestDatabase('idem_roundtrip');
});
after(async () => {
  for (const p of prefixes) await deleteRedisPrefix(redis, p);
  redis.disconnect();
  await db.close();
});

const emoji = '😀';
/** Results that JSON round-trips exactly; each must come back to a duplicate as it went in. */
const RESULTS: Record<string, unknown> = {
  nul: 'a\u0000b',
  'lone high surrogate': emoji.slice(0, 1),
  'lone low surrogate': `x${emoji.slice(1)}`,
  'NUL in a key': { 'k\u0000': 1 },
  'surrogates in keys and arrays': { [emoji.slice(0, 1)]: [emoji.slice(1), emoji, '\\u0000 (text, not NUL)'] },
  'looks like the storage wrapper': { $exactly_once_json: '"not really"' },
  'wrapper-like with NUL': { $exactly_once_json: '\u0000' },
  'plain text with escapes': 'tab\there "quotes" \\ backslash \\ud800 text',
};

for (const variant of STORAGE_VARIANTS) {
  describe(`store: ${variant}`, () => {
    let service: IdempotencyService;
    const queue = `results-${variant}`;

    before(() => {
      const prefix = redisPrefix(`idem-rt-${variant}`);
      prefixes.push(prefix);
      service = testService({ databaseUrl: db.url, keyPrefix: prefix, variant }, { pool: db.pool, redis });
    });
    after(() => service.close());

    for (const [name, result] of Object.entries(RESULTS)) {
      test(`a result with ${name} completes its key and round-trips exactly`, async () => {
        const key = generateIdempotencyKey(queue, '', name);
        let runs = 0;
        const processor = async () => {
          runs++;
          return result;
        };
        assert.deepEqual(await service.processWithIdempotency(key, processor), { duplicate: false, result });
        const record = await service.getRecord(queue, '', key.id);
        assert.equal(record?.status, 'completed', 'the key is completed, not left in progress');
        assert.deepEqual(record?.result, result);
        assert.deepEqual(await service.processWithIdempotency(key, processor), { duplicate: true, result });
        assert.equal(runs, 1, 'the processor ran once');
      });
    }

    if (variant.startsWith('database')) {
      test('the transactional form stores such a result too (its transaction commits)', async () => {
        const key = generateIdempotencyKey(queue, '', 'tx');
        const result = { text: `x${emoji.slice(0, 1)}\u0000` };
        let runs = 0;
        const processor = async () => {
          runs++;
          return result;
        };
        assert.deepEqual(await service.processInTransaction(key, processor), { duplicate: false, result });
        assert.deepEqual(await service.processInTransaction(key, processor), { duplicate: true, result });
        assert.deepEqual(await service.processWithIdempotency(key, processor), { duplicate: true, result });
        assert.equal(runs, 1);
      });
    }
  });
}

test('key ids with a lone surrogate are refused: Postgres would store both of these as one id', async () => {
  const prefix = redisPrefix('idem-rt-ids');
  prefixes.push(prefix);
  const service = testService({ databaseUrl: db.url, keyPrefix: prefix, variant: 'database' }, { pool: db.pool });
  try {
    const base = generateIdempotencyKey('ids', '', 'x');
    for (const id of ['a\ud800', 'a\ud801']) {
      await assert.rejects(
        service.processWithIdempotency({ ...base, id }, () => assert.fail('must not run')),
        (err: unknown) => err instanceof IdempotencyKeyInvalidError && err.field === 'id',
      );
    }
  } finally {
    await service.close();
  }
});
