import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import type { AdminBackend } from '../src/admin/backend.js';
import { startOperations } from '../src/admin/start-operations.js';
import { configFromObject } from '../src/config/load-config.js';
import { IdempotencyService } from '../src/idempotency/index.js';
import { SCHEDULE_TABLE } from '../src/maintenance/scheduler.js';
import { Manager } from '../src/manager.js';
import { Metrics } from '../src/metrics/metrics.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  freePort,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';

let db: TestDatabase;
let manager: Manager;
let idempotency: IdempotencyService;
let backend: AdminBackend;
let metrics: Metrics;
const prefix = redisPrefix('operations');

before(async () => {
  db = await createTestDatabase('operations');
  const config = configFromObject({
    database: { url: db.url },
    redis: { url: REDIS_URL },
    idempotency: { key_prefix: prefix },
  });
  metrics = new Metrics({ config: config.metrics, pool: db.pool });
  manager = new Manager(config, { pool: db.pool, metrics });
  idempotency = new IdempotencyService({ config, pool: db.pool, redis: manager.redis, metrics });
  backend = {
    config,
    pool: db.pool,
    redis: manager.redis,
    idempotency,
    publishOutboxEvents: () => manager.publishOutboxEvents(),
  };
});
after(async () => {
  await idempotency.close();
  await deleteRedisPrefix(manager.redis, prefix);
  await manager.close();
  await db.close();
});

test('startOperations serves the admin API and schedules cleanup from cleanup_interval; close() stops both', async () => {
  const ops = await startOperations({ manager: backend, metrics, port: 0 });
  const url = ops.admin?.url;
  assert.ok(url);
  // Each readiness check allows 2 s; under a loaded CI machine the first probe (new connections) can exceed it, which
  // is the probe working, not the server failing: ask again until it is ready.
  await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, 30_000, 'GET /readyz 200');
  assert.equal((await fetch(`${url}/metrics`)).status, 200);
  const { rows } = await db.pool.query<{ type: string; interval_ms: string }>(
    `SELECT type, interval_ms FROM ${SCHEDULE_TABLE} ORDER BY type`,
  );
  assert.deepEqual(rows, [
    { type: 'idempotency', interval_ms: '3600000' }, // idempotency.cleanup_interval 1h
    { type: 'outbox', interval_ms: '86400000' }, // outbox.cleanup_interval 24h
  ]);
  await ops.close();
  await assert.rejects(fetch(`${url}/healthz`));
});

test('a maintenance that cannot start is logged; the admin API still runs', async () => {
  const lines: string[] = [];
  const logger = pino(
    { level: 'error' },
    new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  );
  const dead = `postgres://postgres@127.0.0.1:${await freePort()}/none`;
  await using ops = await startOperations({
    manager: backend,
    metrics,
    logger,
    port: 0,
    maintenance: { connectionString: dead },
  });
  assert.equal(ops.maintenance, undefined);
  assert.equal((await fetch(`${ops.admin?.url}/healthz`)).status, 200);
  assert.ok(
    lines.some((l) => l.includes('scheduled cleanup is not running')),
    lines.join(''),
  );
});
