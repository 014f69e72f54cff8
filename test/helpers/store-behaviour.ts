import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  IdempotencyInProgressError,
  IdempotencyKeyExistsError,
  IdempotencyKeyMismatchError,
} from '../../src/errors.js';
import { generateIdempotencyKey, type IdempotencyService } from '../../src/idempotency/index.js';
import { mastersOf, type RedisClient } from '../../src/redis.js';
import { type StorageVariant, testService } from './idempotency-env.js';
import type { TestDatabase } from './services.js';
import { waitFor } from './services.js';

/** Where the shared store behaviour runs: one Redis server, or a Redis Cluster (every master must be walked). */
export interface StoreBehaviourEnv {
  /** Shown in each describe, e.g. `on a 3-master Redis Cluster`; '' for the single server. */
  where: string;
  variants: readonly StorageVariant[];
  /** The file's database and Redis client, created in its `before` (so read lazily). */
  db(): TestDatabase;
  redis(): RedisClient;
  /** A fresh key prefix for one variant; the file deletes what it handed out (or drops the whole cluster). */
  prefix(label: string): string;
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Enough tenants that, with keys hashed per tenant, every master of a 3-master cluster holds some (P(miss) < 1e-6). */
const TENANTS = Array.from({ length: 40 }, (_, n) => `t${n}`);

/**
 * The behaviour every idempotency store must show, whatever holds its records: registered once per variant of
 * `env`. test/idempotency.store-behaviour.test.ts runs it on one Redis (every variant), test/cluster.store-behaviour
 * .test.ts on a three-master cluster (the Redis-backed variants), so the two can never drift apart.
 */
export function storeBehaviour(env: StoreBehaviourEnv): void {
  /** Per-field expiry (HPEXPIRE) exists from Redis 7.4; COMMAND INFO answers nil for an unknown command. */
  const hasFieldExpiry = async (): Promise<boolean> => {
    const info = (await env.redis().call('COMMAND', 'INFO', 'HPEXPIRE')) as unknown[];
    return Array.isArray(info) && info[0] != null;
  };

  /** Every key under `prefix`, on every server that holds data, as [server index, key] pairs. */
  const keysUnder = async (prefix: string): Promise<[number, string][]> => {
    const found: [number, string][] = [];
    const servers = mastersOf(env.redis());
    for (const [n, server] of servers.entries()) {
      let cursor = '0';
      do {
        const [next, keys] = await server.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        for (const k of keys) found.push([n, k]);
      } while (cursor !== '0');
    }
    return found;
  };

  /** What physically remains of a key in the variant's storage (not through the store's expiry-aware reads). */
  const storedCopies = async (
    variant: StorageVariant,
    prefix: string,
    queueName: string,
    keyId: string,
  ): Promise<number> => {
    if (variant.startsWith('database')) {
      const { rows } = await env
        .db()
        .pool.query('SELECT 1 FROM idempotency_keys WHERE queue_name = $1 AND key_id = $2', [queueName, keyId]);
      return rows.length;
    }
    if (variant === 'memory') return 0; // a Map in the service: its cleanup count is the physical evidence
    const redis = env.redis();
    let n = 0;
    for (const [, k] of await keysUnder(prefix)) {
      if ((await redis.type(k)) === 'hash') n += (await redis.hexists(k, keyId)) ? 1 : 0;
      else if (k.endsWith(`:${keyId.replaceAll(':', '%3A')}`)) n++;
    }
    return n;
  };

  for (const variant of env.variants) {
    describe(`store: ${variant}${env.where ? ` ${env.where}` : ''}`, () => {
      let service: IdempotencyService;
      let prefix: string;
      const q = (name: string) => `${name}-${variant}`;

      before(() => {
        prefix = env.prefix(`idem-${variant}`);
        service = testService(
          { databaseUrl: env.db().url, keyPrefix: prefix, variant },
          { pool: env.db().pool, redis: env.redis() },
        );
      });
      after(() => service.close());

      test('the first call runs; a duplicate gets the stored result as JSON', async () => {
        const key = generateIdempotencyKey(q('orders'), '', 'order-1');
        const at = new Date('2024-01-02T03:04:05.000Z');
        const first = await service.processWithIdempotency(key, async () => ({ total: 42, at, big: 'x'.repeat(500) }));
        assert.deepEqual(first, { duplicate: false, result: { total: 42, at, big: 'x'.repeat(500) } });
        const second = await service.processWithIdempotency(key, () => assert.fail('a duplicate must not run'));
        assert.deepEqual(second, {
          duplicate: true,
          result: { total: 42, at: at.toISOString(), big: 'x'.repeat(500) },
        });
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
        assert.equal(
          await storedCopies(variant, prefix, gone.queueName, gone.id),
          0,
          'nothing of the expired key remains',
        );
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
        assert.deepEqual(
          await service.processWithIdempotency(key, async () => 'again', { fingerprint: 'sha256:aaa' }),
          {
            duplicate: true,
            result: 'charged',
          },
        );
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

      test('stats of many queues written in one flush all land (on a cluster: hashes in different slots)', async () => {
        // Concurrent calls on many queues: the stats buffer writes their counters together, one hash per queue.
        const queues = Array.from({ length: 8 }, (_, n) => q(`flush${n}`));
        await Promise.all(
          queues.map(async (queue) => {
            const key = generateIdempotencyKey(queue, '', 'once');
            await service.processWithIdempotency(key, async () => queue);
            await service.processWithIdempotency(key, async () => queue);
          }),
        );
        for (const queue of queues) {
          const stats = await service.getDedupStats(queue);
          assert.deepEqual([stats.totalKeys, stats.totalRequests, stats.duplicatesAvoided], [1, 2, 1], queue);
        }
      });

      test('counts, stats and cleanup see the keys of every server that holds them', async () => {
        const queue = q('wide');
        for (const tenant of TENANTS) {
          const keep = generateIdempotencyKey(queue, tenant, 'keep');
          await service.processWithIdempotency({ ...keep, ttl: 3_600_000 }, async () => tenant);
          await service.processWithIdempotency({ ...keep, ttl: 3_600_000 }, () =>
            assert.fail('a duplicate must not run'),
          );
          await service.processWithIdempotency(
            { ...generateIdempotencyKey(queue, tenant, 'gone'), ttl: 200 },
            async () => 1,
          );
        }
        if (variant.startsWith('redis') || variant === 'database-hot-cache') {
          // The hot cache holds completed keys only under `<prefix>cache:`; the Redis stores hold everything under prefix.
          const held = await keysUnder(variant === 'database-hot-cache' ? `${prefix}cache:` : prefix);
          const servers = new Set(held.map(([n]) => n));
          assert.equal(servers.size, mastersOf(env.redis()).length, `the keys live on ${servers.size} server(s)`);
        }
        await waitFor(
          async () =>
            (
              await Promise.all(
                TENANTS.map((t) => service.getRecord(queue, t, generateIdempotencyKey(queue, t, 'gone').id)),
              )
            ).every((r) => r === undefined),
          5000,
          'the short-lived records to expire',
        );
        const removed = await service.cleanup();
        // Plain keys carry PX, so Redis drops them itself (hash fields too, from 7.4); rows and older hash fields need it.
        const selfExpiring = variant === 'redis' || (variant === 'redis-hashes-compressed' && (await hasFieldExpiry()));
        assert.equal(removed, selfExpiring ? 0 : TENANTS.length, `cleanup removed ${removed}`);
        assert.equal(await service.cleanup(), 0, 'a second cleanup finds nothing left');
        const all = await service.getDedupStats(queue);
        assert.deepEqual(
          [all.totalKeys, all.totalRequests, all.duplicatesAvoided],
          [TENANTS.length, TENANTS.length * 3, TENANTS.length],
          'the live records of every server, and every request, are counted',
        );
        const one = await service.getDedupStats(queue, 't7');
        assert.deepEqual([one.totalKeys, one.totalRequests, one.duplicatesAvoided], [1, 3, 1]);
        for (const tenant of TENANTS) {
          assert.equal(await storedCopies(variant, prefix, queue, generateIdempotencyKey(queue, tenant, 'gone').id), 0);
        }
      });
    });
  }
}
