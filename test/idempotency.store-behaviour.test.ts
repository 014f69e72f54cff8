import { after, before } from 'node:test';
import { STORAGE_VARIANTS, testRedis } from './helpers/idempotency-env.js';
import { createTestDatabase, deleteRedisPrefix, redisPrefix, type TestDatabase } from './helpers/services.js';
import { storeBehaviour } from './helpers/store-behaviour.js';

// The shared store behaviour (test/helpers/store-behaviour.ts) on one Redis server, for every storage variant;
// test/cluster.store-behaviour.test.ts runs the same cases on a three-master cluster.
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

storeBehaviour({
  where: '',
  variants: STORAGE_VARIANTS,
  db: () => db,
  redis: () => redis,
  prefix(label) {
    const p = redisPrefix(label);
    prefixes.push(p);
    return p;
  },
});
