import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generateIdempotencyKey, type IdempotencyService } from '../src/idempotency/index.js';
import { keySlot } from '../src/publishers/hash-tag.js';
import { type StorageVariant, testService } from './helpers/idempotency-env.js';
import { startTestCluster, type TestCluster } from './helpers/redis-cluster.js';
import { createTestDatabase, redisPrefix, type TestDatabase, waitFor } from './helpers/services.js';

// The idempotency stores on a real three-master Redis Cluster. Every script touches one key, so decisions work on any
// node; what must see every key — counts (SCAN), cleanup (SCAN + sweep), stats (one hash per queue) — must walk every
// master, or it answers for a third of the keys. The cluster dies with this file; the database is dropped.
let tc: TestCluster;
let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('cluster_idem');
  tc = await startTestCluster();
});
after(async () => {
  await tc?.close();
  await db?.close();
});

const TENANTS = Array.from({ length: 12 }, (_, n) => `t${n}`);
const QUEUES = Array.from({ length: 8 }, (_, n) => `q${n}`);

/** Masters holding at least one key that matches `match`, and how many such keys there are. */
async function keysByMaster(match: string): Promise<{ masters: number; keys: string[] }> {
  const keys: string[] = [];
  let masters = 0;
  for (const node of tc.client.nodes('master')) {
    let found = 0;
    let cursor = '0';
    do {
      const [next, page] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      found += page.length;
      keys.push(...page);
    } while (cursor !== '0');
    if (found > 0) masters++;
  }
  return { masters, keys };
}

for (const variant of ['redis', 'redis-hashes-compressed', 'database-hot-cache'] as StorageVariant[]) {
  describe(`on Redis Cluster, store: ${variant}`, () => {
    let service: IdempotencyService;
    let prefix: string;
    const q = (name: string) => `${name}-${variant}`;

    before(() => {
      prefix = redisPrefix(`cl-idem-${variant}`);
      service = testService(
        { databaseUrl: db.url, keyPrefix: prefix, variant, defaultTtl: '1h' },
        { pool: db.pool, redis: tc.client },
      );
    });
    after(() => service.close());

    test('duplicates get the first result; counts and stats cover keys on every master', async () => {
      const queue = q('orders');
      for (const tenant of TENANTS) {
        for (const id of ['a', 'b']) {
          const key = generateIdempotencyKey(queue, tenant, id);
          assert.deepEqual(await service.processWithIdempotency(key, async () => `${tenant}/${id}`), {
            duplicate: false,
            result: `${tenant}/${id}`,
          });
          assert.deepEqual(await service.processWithIdempotency(key, () => assert.fail('a duplicate must not run')), {
            duplicate: true,
            result: `${tenant}/${id}`,
          });
        }
      }
      if (variant !== 'database-hot-cache') {
        const spread = await keysByMaster(`${prefix}*`);
        assert.ok(spread.masters >= 2, `the records live on ${spread.masters} master(s); the test needs several`);
      } else {
        const cached = await keysByMaster(`${prefix}cache:*`);
        assert.equal(cached.keys.length, TENANTS.length * 2, 'each completed key is in the hot cache');
        assert.ok(cached.masters >= 2, `the cached copies live on ${cached.masters} master(s)`);
      }
      const all = await service.getDedupStats(queue);
      assert.deepEqual(
        [all.totalKeys, all.totalRequests, all.duplicatesAvoided],
        [TENANTS.length * 2, TENANTS.length * 4, TENANTS.length * 2],
      );
      const one = await service.getDedupStats(queue, 't3');
      assert.deepEqual([one.totalKeys, one.totalRequests, one.duplicatesAvoided], [2, 4, 2]);
    });

    test('stats of many queues written in one flush (their keys on different slots) all land', async () => {
      const slots = new Set(QUEUES.map((name) => keySlot(`${prefix}eo-stats:${q(name)}`)));
      assert.ok(slots.size > 1);
      // Concurrent calls on many queues: the stats buffer writes their counters together.
      await Promise.all(
        QUEUES.map(async (name) => {
          const key = generateIdempotencyKey(q(name), '', 'once');
          await service.processWithIdempotency(key, async () => name);
          await service.processWithIdempotency(key, async () => name);
        }),
      );
      for (const name of QUEUES) {
        const stats = await service.getDedupStats(q(name));
        assert.deepEqual([stats.totalKeys, stats.totalRequests, stats.duplicatesAvoided], [1, 2, 1], name);
      }
    });

    test('cleanup removes expired records on every master, and nothing else', async () => {
      const queue = q('ttl');
      for (const tenant of TENANTS) {
        await service.processWithIdempotency(
          { ...generateIdempotencyKey(queue, tenant, 'keep'), ttl: 3_600_000 },
          async () => 1,
        );
        await service.processWithIdempotency(
          { ...generateIdempotencyKey(queue, tenant, 'gone'), ttl: 200 },
          async () => 1,
        );
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
      // Plain keys carry PX, so Redis drops them itself; hash fields (Redis 7.0: no HPEXPIRE) and rows need cleanup.
      assert.equal(removed, variant === 'redis' ? 0 : TENANTS.length, `cleanup removed ${removed}`);
      assert.equal(await service.cleanup(), 0, 'a second cleanup finds nothing left');
      const stats = await service.getDedupStats(queue);
      assert.equal(stats.totalKeys, TENANTS.length, 'the live records, on every master, are all counted');
      for (const tenant of TENANTS) {
        const key = generateIdempotencyKey(queue, tenant, 'keep');
        assert.equal((await service.processWithIdempotency(key, async () => 2)).duplicate, true, tenant);
      }
      if (variant === 'redis-hashes-compressed') {
        const hashes = await keysByMaster(`${prefix}${queue}:idempotency:*`);
        assert.ok(hashes.masters >= 2, `the hashes live on ${hashes.masters} master(s)`);
        let fields = 0;
        for (const hash of hashes.keys) fields += await tc.client.hlen(hash);
        assert.equal(fields, TENANTS.length, 'only the live fields remain in the hashes');
      }
    });
  });
}
