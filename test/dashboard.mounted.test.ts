// The dashboard inside an application's own fastify server, under a prefix (`/ops/`), next to the application's own
// `GET /`: the page, its scripts and the admin API all load from under the prefix (Chromium, as in
// dashboard.browser.test.ts), `/ops` redirects to `/ops/`, and the application keeps its root. The page can also reach
// an admin API mounted elsewhere (`api` option).
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import type { Browser } from 'playwright-core';
import { exactlyOnceAdmin } from '../src/admin/plugin.js';
import { exactlyOnceUi } from '../src/admin/ui-plugin.js';
import { configFromObject } from '../src/config/load-config.js';
import { Manager } from '../src/manager.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { launchChromium, watchedPage } from './helpers/browser.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
} from './helpers/services.js';

let db: TestDatabase;
let redis: Redis;
let manager: Manager;
let app: FastifyInstance;
let base: string;
let browser: Browser;
const prefix = redisPrefix('dashboard-mounted');

before(async () => {
  db = await createTestDatabase('dashboard_mounted');
  redis = new Redis(REDIS_URL);
  const config = configFromObject({
    database: { url: db.url },
    redis: { url: REDIS_URL },
    idempotency: { key_prefix: prefix },
    outbox: { queue_pattern: `${prefix}jobqueue:{priority}_priority` },
  });
  manager = new Manager(config, { pool: db.pool, redis });
  await storeInOutboxStandalone(
    db.pool,
    { aggregateType: 'order', aggregateId: 'mounted-1', eventType: 'order.created', payload: { n: 1 } },
    config.outbox,
  );
  // The application: its own home page, the admin API and the dashboard under /ops, and the dashboard once more
  // under /board, reading the API from /ops (the `api` option).
  app = Fastify();
  app.get('/', async () => ({ home: 'the application' }));
  await app.register(exactlyOnceAdmin, { prefix: '/ops', manager, probes: false });
  await app.register(exactlyOnceUi, { prefix: '/ops' });
  await app.register(exactlyOnceUi, { prefix: '/board', api: '/ops/api/v1/exactly-once' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await app?.close();
  await manager?.close();
  if (redis) {
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
  }
  await db?.close();
});

test('the application keeps its GET /; /ops redirects to /ops/', async () => {
  const home = await fetch(`${base}/`);
  assert.deepEqual(await home.json(), { home: 'the application' });
  const bare = await fetch(`${base}/ops?x=1`, { redirect: 'manual' });
  assert.equal(bare.status, 308);
  assert.equal(bare.headers.get('location'), '/ops/?x=1');
});

for (const [path, what] of [
  ['/ops/', 'under /ops/, beside its admin API'],
  ['/board/', 'under /board/, reading the admin API at /ops (api option)'],
] as const) {
  test(`in Chromium, the dashboard ${what}: every screen's files and data load from there`, async () => {
    const tab = await watchedPage(browser);
    const failed: string[] = [];
    const requested: string[] = [];
    tab.page.on('response', (res) => {
      requested.push(new URL(res.url()).pathname);
      if (res.status() >= 400) failed.push(`${res.status()} ${res.url()}`);
    });
    try {
      await tab.page.goto(`${base}${path}#/events`);
      await tab.page.locator('#event-results tbody tr', { hasText: 'mounted-1' }).waitFor();
      await tab.page.goto(`${base}${path}#/overview`);
      await tab.page.getByText('Postgres').first().waitFor();
      assert.deepEqual(failed, [], 'no request failed');
      assert.ok(requested.includes(`${path}ui/app.js`), `the scripts come from ${path}ui/: ${requested.join(' ')}`);
      assert.ok(
        requested.some((p) => p.startsWith('/ops/api/v1/exactly-once/')),
        `the data comes from the API under /ops: ${requested.join(' ')}`,
      );
      assert.ok(!requested.some((p) => p.startsWith('/ui/') || p.startsWith('/api/')), 'nothing from the root');
      tab.assertClean();
    } finally {
      await tab.close();
    }
  });
}
