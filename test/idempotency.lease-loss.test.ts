import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { IdempotencyLeaseLostError } from '../src/errors.js';
import { generateIdempotencyKey, type IdempotencyService } from '../src/idempotency/index.js';
import { STORAGE_VARIANTS, testRedis, testService } from './helpers/idempotency-env.js';
import { startWorker } from './helpers/idempotency-spawn.js';
import { createTestDatabase, deleteRedisPrefix, redisPrefix, type TestDatabase, waitFor } from './helpers/services.js';

// G4: a processor that outlives its lease (event loop blocked, so no renewal) used to run a second time elsewhere
// while both calls reported `duplicate: false` and the first learnt nothing. Now its signal fires, the call ends with
// IdempotencyLeaseLostError, and its late completion is fenced off by the claim token.

let db: TestDatabase;
const redis = testRedis();
const prefixes: string[] = [];
const dir = mkdtempSync(path.join(tmpdir(), 'eo-lease-'));

before(async () => {
  db = await createTestDatabase('idem_lease_loss');
  await db.pool.query('CREATE TABLE effects (id serial PRIMARY KEY, key_id text NOT NULL, pid int NOT NULL)');
});
after(async () => {
  for (const p of prefixes) await deleteRedisPrefix(redis, p);
  redis.disconnect();
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

const effectPids = async (keyId: string) =>
  (await db.pool.query<{ pid: number }>('SELECT pid FROM effects WHERE key_id = $1 ORDER BY id', [keyId])).rows.map(
    (r) => r.pid,
  );
const busyWait = (ms: number) => {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // the event loop is blocked: no lease renewal can fire
  }
};

describe('two processes (the default store, database + Redis hot cache)', () => {
  const prefix = redisPrefix('idem-lease-procs');
  prefixes.push(prefix);

  for (const honourSignal of [false, true]) {
    const name = honourSignal
      ? 'A honours its signal: its effect never happens, the call ends with IdempotencyLeaseLostError'
      : 'A ignores its signal: its completion is refused, the call ends with IdempotencyLeaseLostError';
    test(`A blocks past its lease, B takes over; ${name}`, async () => {
      const suffix = honourSignal ? 'file-honour' : 'file-ignore';
      const releaseFile = path.join(dir, suffix);
      const a = startWorker({
        mode: 'block-past-lease',
        databaseUrl: db.url,
        keyPrefix: prefix,
        variant: 'database-hot-cache',
        queue: 'imports',
        keySuffix: suffix,
        releaseFile,
        honourSignal,
      });
      // Process B: this test process, with the same 1s lease as A.
      const b = testService({ databaseUrl: db.url, keyPrefix: prefix, lease: '1s' }, { pool: db.pool, redis });
      const key = generateIdempotencyKey('imports', '', suffix);
      try {
        await a.next('claimed');
        const taken = await b.processWithIdempotency(
          key,
          async () => {
            await db.pool.query('INSERT INTO effects (key_id, pid) VALUES ($1, $2)', [key.id, process.pid]);
            return { ranBy: process.pid };
          },
          { waitTimeoutMs: 15_000 },
        );
        assert.deepEqual(taken, { duplicate: false, result: { ranBy: process.pid } }, 'B took over the lapsed lease');

        writeFileSync(releaseFile, ''); // A's event loop runs again, long after its lease ended
        const outcome = await a.next('outcome');
        assert.equal(outcome.ok, false, `A must not report success: ${JSON.stringify(outcome)}`);
        assert.equal(outcome.code, 'EO_IDEMPOTENCY_LEASE_LOST');
        assert.equal(outcome.aborted, true, "A's signal fired");

        const record = await b.getRecord('imports', '', key.id);
        assert.equal(record?.status, 'completed');
        assert.deepEqual(record?.result, { ranBy: process.pid }, "A's late completion did not overwrite B's record");
        const again = await b.processWithIdempotency(key, () => assert.fail('a duplicate must not run'));
        assert.deepEqual(again, { duplicate: true, result: { ranBy: process.pid } });
        assert.deepEqual(
          await effectPids(key.id),
          honourSignal ? [process.pid] : [process.pid, a.child.pid],
          honourSignal
            ? 'A stopped before its effect'
            : 'A ran its effect anyway (only processInTransaction prevents that)',
        );
      } finally {
        writeFileSync(releaseFile, '');
        await a.kill();
        await b.close();
      }
    });
  }
});

for (const variant of STORAGE_VARIANTS) {
  describe(`store: ${variant}`, () => {
    let service: IdempotencyService;
    const queue = `lease-${variant}`;

    before(() => {
      const prefix = redisPrefix(`idem-lease-${variant}`);
      prefixes.push(prefix);
      service = testService({ databaseUrl: db.url, keyPrefix: prefix, variant, lease: '1s' }, { pool: db.pool, redis });
    });
    after(() => service.close());

    test('a completion after a takeover is refused; the new owner keeps its record', async () => {
      const key = generateIdempotencyKey(queue, '', 'takeover');
      const ref = { queueName: queue, tenantId: '', keyId: key.id };
      const call = service.processWithIdempotency(key, async () => {
        busyWait(1300); // past the 1s lease
        // Process B, through the same store: the lapsed claim is free to take, and B completes it.
        const claim = { token: 'b0'.repeat(16), leaseMs: 1000, ttlMs: 60_000, fingerprint: null };
        assert.equal((await service.store.claim(ref, claim)).kind, 'claimed');
        assert.equal(await service.store.complete(ref, claim.token, '{"ranBy":"B"}', 60_000), true);
        return { ranBy: 'A' };
      });
      await assert.rejects(
        call,
        (err: unknown) => err instanceof IdempotencyLeaseLostError && err.code === 'EO_IDEMPOTENCY_LEASE_LOST',
      );
      assert.deepEqual((await service.getRecord(queue, '', key.id))?.result, { ranBy: 'B' });
      assert.deepEqual(await service.processWithIdempotency(key, () => assert.fail('must not run')), {
        duplicate: true,
        result: { ranBy: 'B' },
      });
    });

    test("a release after a takeover leaves the new owner's claim in place", async () => {
      const key = generateIdempotencyKey(queue, '', 'release');
      const ref = { queueName: queue, tenantId: '', keyId: key.id };
      const claim = { token: 'b1'.repeat(16), leaseMs: 30_000, ttlMs: 60_000, fingerprint: null };
      const call = service.processWithIdempotency(key, async ({ signal }) => {
        busyWait(1300);
        assert.equal((await service.store.claim(ref, claim)).kind, 'claimed');
        await waitFor(() => signal.aborted, 5000, 'the lease check to fire the signal');
        throw signal.reason;
      });
      await assert.rejects(call, IdempotencyLeaseLostError);
      const record = await service.getRecord(queue, '', key.id);
      assert.equal(record?.status, 'in_progress', "B's claim survived A's release");
      assert.equal(await service.store.complete(ref, claim.token, '"B"', 60_000), true, 'B still holds it');
    });

    test("a completion while the new owner's claim is still in progress is refused; the claim stays the new owner's", async () => {
      // Unlike the takeover test above, B has not completed yet: only the claim token (not the status) can tell A's
      // late completion from B's.
      const key = generateIdempotencyKey(queue, '', 'complete-during-takeover');
      const ref = { queueName: queue, tenantId: '', keyId: key.id };
      const claim = { token: 'b2'.repeat(16), leaseMs: 30_000, ttlMs: 60_000, fingerprint: null };
      const call = service.processWithIdempotency(key, async () => {
        busyWait(1300); // past the 1s lease
        assert.equal((await service.store.claim(ref, claim)).kind, 'claimed');
        return { ranBy: 'A' }; // ignores its signal
      });
      await assert.rejects(call, IdempotencyLeaseLostError);
      const record = await service.getRecord(queue, '', key.id);
      assert.equal(record?.status, 'in_progress', "A's result did not replace B's claim");
      assert.equal(record?.result ?? null, null);
      assert.equal(await service.store.complete(ref, claim.token, '{"ranBy":"B"}', 60_000), true, 'B still holds it');
      assert.deepEqual(await service.processWithIdempotency(key, () => assert.fail('must not run')), {
        duplicate: true,
        result: { ranBy: 'B' },
      });
    });

    test('the signal fires when renewal finds the key gone (deleted by an operator)', async () => {
      const key = generateIdempotencyKey(queue, '', 'deleted');
      let reason: unknown;
      const call = service.processWithIdempotency(key, async ({ signal }) => {
        assert.equal(signal.aborted, false);
        assert.equal(await service.deleteRecord(queue, '', key.id), true);
        await waitFor(() => signal.aborted, 5000, 'a renewal to notice the lost claim');
        reason = signal.reason;
        return 'too late'; // ignores the signal: the fenced completion must still refuse it
      });
      await assert.rejects(call, IdempotencyLeaseLostError);
      assert.ok(reason instanceof IdempotencyLeaseLostError, `signal.reason is the typed error: ${reason}`);
      assert.equal(await service.getRecord(queue, '', key.id), undefined, 'the late completion wrote nothing');
    });

    test('a lapsed lease nobody took: the signal fires, and a finished result is still stored (the fence decides)', async () => {
      const key = generateIdempotencyKey(queue, '', 'lapsed');
      let aborted: boolean | undefined;
      const result = await service.processWithIdempotency(key, async ({ signal }) => {
        busyWait(1300);
        await new Promise((r) => setTimeout(r, 1));
        aborted = signal.aborted;
        return 'done';
      });
      assert.equal(aborted, true, 'the processor was told its lease lapsed');
      assert.deepEqual(result, { duplicate: false, result: 'done' }, 'nobody else claimed it, so this run counts');
      assert.deepEqual(await service.processWithIdempotency(key, () => 'again'), { duplicate: true, result: 'done' });
    });

    test('processors that take no argument keep working', async () => {
      const key = generateIdempotencyKey(queue, '', 'zero-arg');
      const zeroArg = async () => 'plain';
      assert.deepEqual(await service.processWithIdempotency(key, zeroArg), { duplicate: false, result: 'plain' });
    });
  });
}
