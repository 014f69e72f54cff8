import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { IdempotencyInProgressError, IdempotencyKeyExistsError, IdempotencyKeyMismatchError } from '../src/errors.js';
import { generateIdempotencyKey, type IdempotencyService } from '../src/idempotency/index.js';
import { STORAGE_VARIANTS, type StorageVariant, testRedis, testService } from './helpers/idempotency-env.js';
import { createTestDatabase, deleteRedisPrefix, redisPrefix, type TestDatabase, waitFor } from './helpers/services.js';

let db: TestDatabase;
const redis = testRedis();
const prefixes: string[] = [];

before(async () => {
  db = await createTestDatabase('idem_stores');
});
after(async () => {
  for (const p of prefixes) await deleteRedisPrefix(redis, p);
  redis.disconnect();
  await db.close();
});

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The same behaviour, whatever the store: each variant gets its own Redis prefix and queue names. */
for (const variant of STORAGE_VARIANTS) {
  describe(`store: ${variant}`, () => {
    let service: IdempotencyService;
    const q = (name: string) => `${name}-${variant}`;

    before(() => {
      const prefix = redisPrefix(`idem-${variant}`);
      prefixes.push(prefix);
      service = testService({ databaseUrl: db.url, keyPrefix: prefix, variant }, { pool: db.pool, redis });
    });
    after(() => service.close());

    test('the first call runs; a duplicate gets the stored result as JSON', async () => {
      const key = generateIdempotencyKey(q('orders'), '', 'order-1');
      const at = new Date('2024-01-02T03:04:05.000Z');
      const first = await service.processWithIdempotency(key, async () => ({ total: 42, at, big: 'x'.repeat(500) }));
      assert.deepEqual(first, { duplicate: false, result: { total: 42, at, big: 'x'.repeat(500) } });
      const second = await service.processWithIdempotency(key, () => assert.fail('a duplicate must not run'));
      assert.deepEqual(second, { duplicate: true, result: { total: 42, at: at.toISOString(), big: 'x'.repeat(500) } });
      const undef = generateIdempotencyKey(q('orders'), '', 'order-void');
      await service.processWithIdempotency(undef, async () => undefined);
      assert.deepEqual(await service.processWithIdempotency(undef, async () => 1), { duplicate: true, result: null });
    });

    test('a processor error releases the key and is rethrown; the retry runs', async () => {
      const key = generateIdempotencyKey(q('orders'), '', 'order-2');
      await assert.rejects(
        service.processWithIdempotency(key, async () => {
          throw new Error('smtp down');
        }),
        /smtp down/,
      );
      assert.equal(await service.getRecord(key.queueName, '', key.id), undefined);
      assert.deepEqual(await service.processWithIdempotency(key, async () => 'sent'), {
        duplicate: false,
        result: 'sent',
      });
    });

    test('concurrent duplicates in one process: one run, everyone gets its result', async () => {
      const key = generateIdempotencyKey(q('orders'), '', 'order-3');
      let runs = 0;
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          service.processWithIdempotency(key, async () => {
            runs++;
            await tick(100);
            return i;
          }),
        ),
      );
      assert.equal(runs, 1);
      assert.equal(results.filter((r) => !r.duplicate).length, 1);
      assert.equal(new Set(results.map((r) => r.result)).size, 1);
    });

    test('a duplicate that waits past wait_timeout gets IdempotencyInProgressError, never a second run', async () => {
      const key = generateIdempotencyKey(q('orders'), '', 'order-4');
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const first = service.processWithIdempotency(key, () => gate.then(() => 'done'));
      await waitFor(async () => (await service.getRecord(key.queueName, '', key.id)) !== undefined, 5000, 'claim');
      const record = await service.getRecord(key.queueName, '', key.id);
      assert.equal(record?.status, 'in_progress');
      await assert.rejects(
        service.processWithIdempotency(key, () => assert.fail('must not run'), { waitTimeoutMs: 150 }),
        (err: unknown) => err instanceof IdempotencyInProgressError && err.code === 'EO_IDEMPOTENCY_IN_PROGRESS',
      );
      release();
      assert.deepEqual(await first, { duplicate: false, result: 'done' });
    });

    test('an expired key runs again, and cleanup removes expired records', async () => {
      const key = { ...generateIdempotencyKey(q('ttl'), '', 'short'), ttl: 300 };
      assert.equal((await service.processWithIdempotency(key, async () => 1)).duplicate, false);
      assert.equal((await service.processWithIdempotency(key, async () => 2)).duplicate, true);
      await waitFor(async () => (await service.getRecord(key.queueName, '', key.id)) === undefined, 5000, 'expiry');
      // Rerun with a long TTL, so the only expired record at cleanup time below is `swept`.
      const rerun = { ...key, ttl: 3_600_000 };
      assert.deepEqual(await service.processWithIdempotency(rerun, async () => 3), { duplicate: false, result: 3 });

      const gone = { ...generateIdempotencyKey(q('ttl'), '', 'swept'), ttl: 200 };
      // A long-lived neighbour keeps a shared hash (use_hashes) alive, so it is cleanup, not Redis expiring the
      // whole hash, that must remove the expired entry.
      const neighbour = { ...generateIdempotencyKey(q('ttl'), '', 'neighbour'), ttl: 60_000 };
      await service.processWithIdempotency(neighbour, async () => 'stays');
      await service.processWithIdempotency(gone, async () => 'x');
      await waitFor(async () => (await service.getRecord(gone.queueName, '', gone.id)) === undefined, 5000, 'expiry');
      // Plain Redis keys carry a PX expiry (hash fields too, from Redis 7.4), so Redis removes them itself and cleanup
      // finds nothing to sweep; every other store holds the expired record until cleanup removes exactly it.
      const removed = await service.cleanup();
      const selfExpiring = variant === 'redis' || (variant === 'redis-hashes-compressed' && (await hasFieldExpiry()));
      assert.equal(removed, selfExpiring ? 0 : 1, `cleanup removed ${removed}`);
      assert.equal(await storedCopies(variant, gone.queueName, gone.id), 0, 'nothing of the expired key remains');
      assert.equal(await service.cleanup(), 0, 'a second cleanup finds nothing left');
      assert.equal((await service.processWithIdempotency(neighbour, async () => 'again')).duplicate, true);
    });

    test('tenants are isolated: the same id under two tenants and tenant-less is three keys', async () => {
      const runs: string[] = [];
      for (const tenant of ['acme', 'globex', '', 'acme']) {
        const key = generateIdempotencyKey(q('tenants'), tenant, 'job-1');
        await service.processWithIdempotency(key, async () => {
          runs.push(tenant);
          return tenant;
        });
      }
      assert.deepEqual(runs, ['acme', 'globex', '']);
      const acme = await service.getDedupStats(q('tenants'), 'acme');
      assert.deepEqual([acme.totalKeys, acme.totalRequests, acme.duplicatesAvoided], [1, 2, 1]);
      const tenantless = await service.getDedupStats(q('tenants'), '');
      assert.deepEqual([tenantless.totalKeys, tenantless.totalRequests], [1, 1]);
    });

    test('the same key with a different fingerprint is refused', async () => {
      const key = generateIdempotencyKey(q('payments'), 'acme', 'pay-1');
      await service.processWithIdempotency(key, async () => 'charged', { fingerprint: 'sha256:aaa' });
      assert.deepEqual(await service.processWithIdempotency(key, async () => 'again', { fingerprint: 'sha256:aaa' }), {
        duplicate: true,
        result: 'charged',
      });
      await assert.rejects(
        service.processWithIdempotency(key, async () => 'other', { fingerprint: 'sha256:bbb|odd chars:{}' }),
        IdempotencyKeyMismatchError,
      );
      assert.equal((await service.getRecord(key.queueName, 'acme', key.id))?.fingerprint, 'sha256:aaa');
    });

    test('admin helpers: create (conflict is typed), get, delete', async () => {
      const queueName = q('admin');
      const created = await service.createRecord({ queueName, keyId: 'order-123', value: { status: 'processed' } });
      assert.equal(created.status, 'completed');
      await assert.rejects(
        service.createRecord({ queueName, keyId: 'order-123', value: 1 }),
        (err: unknown) => err instanceof IdempotencyKeyExistsError,
      );
      const got = await service.getRecord(queueName, '', 'order-123');
      assert.deepEqual(got?.result, { status: 'processed' });
      const key = { ...generateIdempotencyKey(queueName, ''), id: 'order-123' };
      assert.deepEqual(await service.processWithIdempotency(key, () => assert.fail('must not run')), {
        duplicate: true,
        result: { status: 'processed' },
      });
      assert.equal(await service.deleteRecord(queueName, '', 'order-123'), true);
      assert.equal(await service.deleteRecord(queueName, '', 'order-123'), false);
      assert.equal(await service.getRecord(queueName, '', 'order-123'), undefined);
      assert.equal((await service.processWithIdempotency(key, async () => 'fresh')).duplicate, false);
    });

    test('stats after a known sequence of calls', async () => {
      const queueName = q('stats');
      const k1 = generateIdempotencyKey(queueName, '', 'k1');
      const k2 = generateIdempotencyKey(queueName, 't1', 'k2');
      const k3 = generateIdempotencyKey(queueName, '', 'k3');
      for (let i = 0; i < 3; i++) await service.processWithIdempotency(k1, async () => 1); // 1 run + 2 duplicates
      for (let i = 0; i < 2; i++) await service.processWithIdempotency(k2, async () => 2); // 1 run + 1 duplicate
      await assert.rejects(
        service.processWithIdempotency(k3, async () => {
          throw new Error('boom');
        }),
        /^Error: boom$/,
      );
      await service.processWithIdempotency(k3, async () => 3);

      const all = await service.getDedupStats(queueName);
      assert.deepEqual(
        { ...all, lastUpdated: undefined },
        {
          queueName,
          tenantId: null,
          totalKeys: 3,
          hitRate: 3 / 7,
          totalRequests: 7,
          duplicatesAvoided: 3,
          lastUpdated: undefined,
        },
      );
      assert.ok(all.lastUpdated instanceof Date);
      const none = await service.getDedupStats(queueName, '');
      assert.deepEqual([none.totalKeys, none.totalRequests, none.duplicatesAvoided], [2, 5, 2]);
      const t1 = await service.getDedupStats(queueName, 't1');
      assert.deepEqual(
        [t1.tenantId, t1.totalKeys, t1.totalRequests, t1.duplicatesAvoided, t1.hitRate],
        ['t1', 1, 2, 1, 0.5],
      );
      const empty = await service.getDedupStats(q('never-used'));
      assert.deepEqual([empty.totalRequests, empty.hitRate, empty.lastUpdated], [0, 0, null]);
    });
  });
}

/** Per-field expiry (HPEXPIRE) exists from Redis 7.4; COMMAND INFO answers nil for an unknown command. */
async function hasFieldExpiry(): Promise<boolean> {
  const info = (await redis.call('COMMAND', 'INFO', 'HPEXPIRE')) as unknown[];
  return Array.isArray(info) && info[0] != null;
}

/** What physically remains of a key in the variant's storage (not through the store's expiry-aware reads). */
async function storedCopies(variant: StorageVariant, queueName: string, keyId: string): Promise<number> {
  if (variant.startsWith('database')) {
    const { rows } = await db.pool.query('SELECT 1 FROM idempotency_keys WHERE queue_name = $1 AND key_id = $2', [
      queueName,
      keyId,
    ]);
    return rows.length;
  }
  if (variant === 'memory') return 0; // a Map in the service: its cleanup count above is the physical evidence
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
