import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateIdempotencyKey } from '../src/idempotency/index.js';
import { testService } from './helpers/idempotency-env.js';

const service = (policy: 'fifo' | 'lru', maxKeys = 2) =>
  testService({
    databaseUrl: 'postgres://unused',
    keyPrefix: 'unused:',
    variant: 'memory',
    extra: { storage: { type: 'memory', memory: { max_keys: maxKeys, eviction_policy: policy } } },
  });

/** a and b stored, a read again (a duplicate), then c stored: which of a and b survived? */
async function survivors(policy: 'fifo' | 'lru'): Promise<string[]> {
  const s = service(policy);
  const key = (id: string) => generateIdempotencyKey('emails', '', id);
  for (const id of ['a', 'b']) await s.processWithIdempotency(key(id), async () => id);
  assert.equal((await s.processWithIdempotency(key('a'), async () => 'again')).duplicate, true);
  await s.processWithIdempotency(key('c'), async () => 'c');
  const alive: string[] = [];
  for (const id of ['a', 'b', 'c']) if (await s.getRecord('emails', '', key(id).id)) alive.push(id);
  await s.close();
  return alive;
}

test('fifo evicts the oldest stored key even if it was just read', async () => {
  assert.deepEqual(await survivors('fifo'), ['b', 'c']);
});

test('lru evicts the least recently used key instead', async () => {
  assert.deepEqual(await survivors('lru'), ['a', 'c']);
});

test('an in-progress claim is never evicted (that would let a duplicate run)', async () => {
  const s = service('fifo', 1);
  let release!: () => void;
  const running = s.processWithIdempotency(
    generateIdempotencyKey('emails', '', 'slow'),
    () => new Promise<string>((r) => (release = () => r('slow'))),
  );
  for (const id of ['x', 'y', 'z']) await s.processWithIdempotency(generateIdempotencyKey('emails', '', id), () => id);
  assert.equal((await s.getRecord('emails', '', 'emails::slow'))?.status, 'in_progress');
  let ranAgain = false;
  await assert.rejects(
    s.processWithIdempotency(generateIdempotencyKey('emails', '', 'slow'), () => (ranAgain = true), {
      waitTimeoutMs: 50,
    }),
    /being processed/,
  );
  assert.equal(ranAgain, false);
  release();
  assert.equal((await running).result, 'slow');
  await s.close();
});
