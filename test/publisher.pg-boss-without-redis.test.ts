// A deployment that publishes to pg-boss and keeps nothing in Redis (idempotency off, or its keys in Postgres without
// the Redis hot cache) needs no Redis: the relay daemon starts with REDIS_URL pointing nowhere, publishes into pg-boss,
// reports ready with Redis "not used", and does not warn that a destination Redis does not persist jobs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { configFromObject } from '../src/config/load-config.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { logLines, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import { createTestDatabase, freePort, type TestDatabase, waitFor } from './helpers/services.js';

let db: TestDatabase;
let nowhere: string;

before(async () => {
  db = await createTestDatabase('pgboss_no_redis');
  // A port nothing listens on: any connection attempt to "Redis" is refused.
  nowhere = `redis://127.0.0.1:${await freePort()}`;
});
after(async () => {
  await db?.close();
});

const outbox = { publisher: 'pg-boss', pg_boss: { queue: 'orders.{priority}', create_queues: true } };

for (const [label, idempotency] of [
  ['idempotency off', { enabled: false }],
  ['idempotency keys in Postgres without the hot cache', { storage: { database: { hot_cache: false } } }],
] as const) {
  test(`pg-boss with ${label}: the relay runs without Redis and publishes`, async () => {
    const tree = { database: { url: db.url }, redis: { url: nowhere }, outbox, idempotency };
    const file = writeConfigFile('pgboss-no-redis', tree);
    // A short --wait: before, the relay waited for this Redis and gave up.
    const relay = await startHttpRelay(file, ['--wait', '3s'], { LOG_LEVEL: 'info', REDIS_URL: nowhere });
    try {
      const [event] = await storeInOutboxStandalone(
        db.pool,
        [{ aggregateId: `order-${label.length}`, eventType: 'order.created', payload: { label } }],
        configFromObject(tree).outbox,
      );
      assert.ok(event);
      // pg-boss's schema appears with the relay's first publish: until then the table is missing, not empty.
      await waitFor(
        async () =>
          (await db.pool
            .query('SELECT 1 FROM pgboss.job WHERE id = $1::uuid', [event.id])
            .then((r) => r.rowCount === 1)
            .catch(() => false)) as boolean,
        30_000,
        'the event as a pg-boss job',
      );
      const ready = await relay.get('/readyz');
      assert.equal(ready.status, 200, ready.text);
      const { checks } = ready.json() as { checks: { redis: { ok: boolean; used?: boolean } } };
      assert.deepEqual({ ok: checks.redis.ok, used: checks.redis.used }, { ok: true, used: false });
    } finally {
      const { code } = await relay.stop();
      assert.equal(code, 0, relay.stderr());
    }
    const out = relay.stderr();
    assert.equal(logLines(out, /^Redis is not used/).length, 1, out);
    assert.deepEqual(logLines(out, /DOES NOT PERSIST/), [], 'no destination-durability warning: no job goes to Redis');
    assert.deepEqual(logLines(out, /Redis connection error/), [], 'never tried to connect');
  });
}
