import { after, before } from 'node:test';
import { startTestCluster, type TestCluster } from './helpers/redis-cluster.js';
import { createTestDatabase, redisPrefix, type TestDatabase } from './helpers/services.js';
import { storeBehaviour } from './helpers/store-behaviour.js';

// The idempotency suite's shared behaviour (test/helpers/store-behaviour.ts) on a real three-master Redis Cluster:
// the Redis store (plain keys, and hashes) and the database store's hot cache. Counts, stats and cleanup must walk
// every master, or they answer for a third of the keys. The cluster dies with this file; the database is dropped.
let tc: TestCluster;
let db: TestDatabase;
before(async () => {
  db = await createTestDatabase('cluster_stores');
  tc = await startTestCluster();
});
after(async () => {
  await tc?.close();
  await db?.close();
});

storeBehaviour({
  where: 'on a 3-master Redis Cluster',
  variants: ['redis', 'redis-hashes-compressed', 'database-hot-cache'],
  db: () => db,
  redis: () => tc.client,
  prefix: (label) => redisPrefix(`cl-${label}`),
});
