import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { IdempotencyInProgressError } from '../src/errors.js';
import type { IdempotencyService } from '../src/idempotency/index.js';
import { STORAGE_VARIANTS, type StorageVariant, testRedis, testService } from './helpers/idempotency-env.js';
import { createTestDatabase, deleteRedisPrefix, redisPrefix, type TestDatabase, waitFor } from './helpers/services.js';

// G4: an in-progress key is governed by its lease alone. A processor that runs longer than the key's TTL
// (`default_ttl`) while its lease is renewed fine used to lose its key when the TTL ran out: a concurrent duplicate
// took it over and ran the processor a second time, and cleanup deleted the live in-progress record.

const TTL_MS = 800;
const LEASE = '400ms'; // renewed every third, so several renewals happen before the TTL runs out
/** The processor's run time: well past the TTL, so duplicates and cleanup arrive while it is still running. */
const RUN_MS = 2_500;

let db: TestDatabase;
const redis = testRedis();
const prefixes: string[] = [];

before(async () => {
  db = await createTestDatabase('idem_long_processor');
});
after(async () => {
  for (const p of prefixes) await deleteRedisPrefix(redis, p);
  redis.disconnect();
  await db.close();
});

/**
 * Start a processor that runs RUN_MS without blocking the event loop (so its lease renewals fire), and resolve once
 * it has been running for longer than the key's TTL.
 */
async function startLongProcessor(
  service: IdempotencyService,
  key: ReturnType<IdempotencyService['generateIdempotencyKey']>,
) {
  const state = { runs: 0, startedAt: 0, leaseLost: false };
  const first = service.processWithIdempotency(key, async ({ signal }) => {
    state.runs++;
    state.startedAt = Date.now();
    await delay(RUN_MS);
    state.leaseLost = signal.aborted;
    return 'first-result';
  });
  first.catch(() => {}); // awaited by the test; this only keeps an early rejection from going unhandled
  await waitFor(() => state.runs === 1, 5_000, 'the first processor to start');
  // The TTL was counted from the claim, which came just before the processor started; 200 ms on top is margin.
  await waitFor(() => Date.now() > state.startedAt + TTL_MS + 200, 5_000, "the key's TTL to run out");
  assert.equal(state.runs, 1, 'still only the first run');
  return { first, state };
}

for (const variant of STORAGE_VARIANTS) {
  describe(`store: ${variant}`, () => {
    let service: IdempotencyService;
    const q = (name: string) => `${name}-${variant}`;

    before(() => {
      const prefix = redisPrefix(`idem-long-${variant}`);
      prefixes.push(prefix);
      service = testService(
        { databaseUrl: db.url, keyPrefix: prefix, variant, lease: LEASE, defaultTtl: `${TTL_MS}ms` },
        { pool: db.pool, redis },
      );
    });
    after(() => service.close());

    test('G4: a duplicate arriving after the TTL, while the lease is renewed, waits for the first result', async () => {
      const key = service.generateIdempotencyKey(q('long'), '', 'job-dup');
      assert.equal(key.ttl, TTL_MS);
      const { first, state } = await startLongProcessor(service, key);

      const second = () => {
        state.runs++;
        return 'second-result';
      };
      const [impatient, patient, firstOutcome] = await Promise.allSettled([
        service.processWithIdempotency(key, second, { waitTimeoutMs: 100 }),
        service.processWithIdempotency(key, second), // waits up to wait_timeout (5 s)
        first,
      ]);
      assert.equal(state.runs, 1, 'the processor ran exactly once');
      assert.deepEqual(firstOutcome, { status: 'fulfilled', value: { duplicate: false, result: 'first-result' } });
      assert.equal(state.leaseLost, false, "the first processor's lease was never lost");
      assert.equal(impatient.status, 'rejected');
      assert.ok(
        impatient.reason instanceof IdempotencyInProgressError,
        `a duplicate that stops waiting gets IdempotencyInProgressError, got ${impatient.reason}`,
      );
      assert.deepEqual(patient, { status: 'fulfilled', value: { duplicate: true, result: 'first-result' } });
      // The result is kept for the TTL counted from completion.
      assert.deepEqual(await service.processWithIdempotency(key, second), { duplicate: true, result: 'first-result' });
      assert.equal(state.runs, 1);
    });

    test('G4: cleanup after the TTL leaves an in-progress record with a live lease alone', async () => {
      const key = service.generateIdempotencyKey(q('long'), '', 'job-cleanup');
      const { first, state } = await startLongProcessor(service, key);

      await service.cleanup();
      const during = await service.getRecord(key.queueName, '', key.id);
      assert.equal(during?.status, 'in_progress', 'the in-progress record survives cleanup');
      assert.equal(await storedCopies(variant, key.queueName, key.id), variant === 'memory' ? 0 : 1);

      assert.deepEqual(await first, { duplicate: false, result: 'first-result' });
      assert.equal(state.leaseLost, false, "the first processor's lease was never lost");
      assert.deepEqual(await service.processWithIdempotency(key, () => assert.fail('must not run')), {
        duplicate: true,
        result: 'first-result',
      });
    });

    test('G4: a key whose TTL is shorter than the lease is still held for the whole lease', async () => {
      // No renewals here: the claim alone must keep the record for at least its lease.
      const ref = { queueName: q('short-ttl'), tenantId: '', keyId: 'k' };
      const claim = (token: string) =>
        service.store.claim(ref, { token, leaseMs: 5_000, ttlMs: 200, fingerprint: null });
      assert.equal((await claim('a1'.repeat(16))).kind, 'claimed');
      const claimedAt = Date.now();
      await waitFor(() => Date.now() > claimedAt + 400, 5_000, 'the TTL to run out');
      assert.equal((await claim('a2'.repeat(16))).kind, 'in_progress', 'the lease, not the TTL, decides');
      assert.equal((await service.getRecord(ref.queueName, '', ref.keyId))?.status, 'in_progress');
      assert.equal(await service.store.release(ref, 'a1'.repeat(16)), true);
    });

    if (variant.startsWith('database')) {
      test('G4: a transactional duplicate after the TTL does not take over a live plain-form claim', async () => {
        const key = service.generateIdempotencyKey(q('long'), '', 'job-tx');
        const { first, state } = await startLongProcessor(service, key);
        const dup = await service.processInTransaction(key, async () => {
          state.runs++;
          return 'second-result';
        });
        assert.deepEqual(dup, { duplicate: true, result: 'first-result' });
        assert.deepEqual(await first, { duplicate: false, result: 'first-result' });
        assert.equal(state.runs, 1, 'the processor ran exactly once');
      });
    }
  });
}

/** What physically remains of a key in the variant's storage (not through the store's expiry-aware reads). */
async function storedCopies(variant: StorageVariant, queueName: string, keyId: string): Promise<number> {
  if (variant === 'memory') return 0; // a Map inside the service: getRecord above is the evidence
  if (variant.startsWith('database')) {
    const { rows } = await db.pool.query('SELECT 1 FROM idempotency_keys WHERE queue_name = $1 AND key_id = $2', [
      queueName,
      keyId,
    ]);
    return rows.length;
  }
  let n = 0;
  for (const p of prefixes) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${p}*`, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) {
        if ((await redis.type(k)) === 'hash') n += (await redis.hexists(k, keyId)) ? 1 : 0;
        else if (k.endsWith(`:${keyId.replaceAll(':', '%3A')}`)) n++;
      }
    } while (cursor !== '0');
  }
  return n;
}
