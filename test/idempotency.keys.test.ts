import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IdempotencyKeyInvalidError } from '../src/errors.js';
import { DEFAULT_KEY_TTL_MS, generateIdempotencyKey } from '../src/idempotency/index.js';
import { testService } from './helpers/idempotency-env.js';

test('keys are deterministic: same inputs, same id, no clock or randomness', async () => {
  const a = generateIdempotencyKey('user-queue', '', 'user-created', '42');
  await new Promise((r) => setTimeout(r, 5));
  const b = generateIdempotencyKey('user-queue', '', 'user-created', '42');
  assert.equal(a.id, b.id);
  assert.equal(a.id, 'user-queue::user-created:42');
  assert.deepEqual([a.queueName, a.tenantId, a.ttl], ['user-queue', '', DEFAULT_KEY_TTL_MS]);
  assert.ok(a.createdAt instanceof Date);
});

test('keys are unambiguous whatever the parts contain', () => {
  const ids = [
    generateIdempotencyKey('a:b', 'c').id,
    generateIdempotencyKey('a', 'b:c').id,
    generateIdempotencyKey('a', 'b', 'c').id,
    generateIdempotencyKey('a', '', 'b:c').id,
    generateIdempotencyKey('a', '', 'b', 'c').id,
    generateIdempotencyKey('a', '', 'b%3Ac').id,
    generateIdempotencyKey('a', 'b').id,
  ];
  assert.equal(new Set(ids).size, ids.length, ids.join(' | '));
  assert.equal(generateIdempotencyKey('a:b', 'c').id, 'a%3Ab:c');
});

test('the same suffix under two tenants is two keys', () => {
  assert.notEqual(generateIdempotencyKey('q', 'acme', 'job').id, generateIdempotencyKey('q', 'globex', 'job').id);
  assert.notEqual(generateIdempotencyKey('q', '', 'job').id, generateIdempotencyKey('q', 'acme', 'job').id);
});

test('bad input is refused with the field named', () => {
  const field = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof IdempotencyKeyInvalidError);
      return err.field;
    }
    return 'no error';
  };
  assert.equal(
    field(() => generateIdempotencyKey('', 't')),
    'queueName',
  );
  assert.equal(
    field(() => generateIdempotencyKey('q', 'a\0b')),
    'tenantId',
  );
  assert.equal(
    field(() => generateIdempotencyKey('q'.repeat(600), '')),
    'queueName',
  );
  // Half an emoji would reach Postgres as U+FFFD: two different ids would share one record.
  assert.equal(
    field(() => generateIdempotencyKey('q', '', `file-${'😀'.slice(0, 1)}`)),
    'id',
  );
  assert.equal(
    field(() => generateIdempotencyKey('q', '😀'.slice(1))),
    'tenantId',
  );
  assert.equal(
    field(() => generateIdempotencyKey('q', '', 'whole emoji 😀 is fine')),
    'no error',
  );
});

test('the service validates keys it is handed and uses default_ttl for keys it makes', async () => {
  const s = testService({
    databaseUrl: 'postgres://unused',
    keyPrefix: 'unused:',
    variant: 'memory',
    defaultTtl: '4h',
  });
  assert.equal(s.generateIdempotencyKey('q', '', 'x').ttl, 4 * 3600 * 1000);
  const key = generateIdempotencyKey('q', '', 'x');
  let ran = false;
  await assert.rejects(
    s.processWithIdempotency({ ...key, ttl: 0 }, () => (ran = true)),
    (err: unknown) => err instanceof IdempotencyKeyInvalidError && err.field === 'ttl',
  );
  await assert.rejects(
    s.processWithIdempotency({ ...key, id: '' }, () => (ran = true)),
    (err: unknown) => err instanceof IdempotencyKeyInvalidError && err.field === 'id',
  );
  assert.equal(ran, false);
  await s.close();
});
