import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { Manager } from '../src/entries/manager.js';
import { generateIdempotencyKey, loadConfig, storeInOutbox } from '../src/index.js';
import { markKey } from '../src/publishers/hash-tag.js';
import { testRedis } from './helpers/idempotency-env.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';

// The README's main API, called the way the README shows it: config from a YAML file named by EXACTLY_ONCE_CONFIG,
// `new Manager(loadConfig())`, and nothing wired by hand, so a config key the Manager does not pass on (such as
// `outbox.dedup_window`) shows up here.

interface Schema {
  orders: { id: string; total: number };
  shipments: { order_id: string };
}

let db: TestDatabase;
let manager: Manager;
let kysely: Kysely<Schema>;
const redis = testRedis();
const prefix = redisPrefix('readme');
const dir = mkdtempSync(path.join(tmpdir(), 'eo-readme-'));
const savedEnv = { ...process.env };
/** Not the default (24h), and 1000× off in either direction if a unit were misread. */
const DEDUP_WINDOW_MS = 90 * 60_000;

before(async () => {
  db = await createTestDatabase('readme_api');
  await db.pool.query('CREATE TABLE orders (id text PRIMARY KEY, total int NOT NULL)');
  await db.pool.query('CREATE TABLE shipments (order_id text PRIMARY KEY)');
  const file = path.join(dir, 'exactly-once.yaml');
  writeFileSync(
    file,
    [
      'exactly_once:',
      '  database:',
      `    url: "${db.url}"`,
      '  redis:',
      `    url: "${REDIS_URL}"`,
      '  idempotency:',
      `    key_prefix: "${prefix}"`,
      '    default_ttl: 1h',
      '  outbox:',
      `    queue_pattern: "${prefix}jobqueue:{priority}_priority"`,
      '    dedup_window: 90m',
      '',
    ].join('\n'),
  );
  // The file is the only source: the environment's service URLs would win over it.
  delete process.env.DATABASE_URL;
  delete process.env.REDIS_URL;
  process.env.EXACTLY_ONCE_CONFIG = file;
  manager = new Manager(loadConfig());
  // The application's own Kysely, on its own pool, as in the README's "Writing events".
  kysely = new Kysely<Schema>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: db.url }) }) });
});
after(async () => {
  await manager?.close();
  await kysely?.destroy();
  process.env = savedEnv;
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

test('keys, processWithIdempotency, registerHook and getDedupStats, as the README shows them', async () => {
  assert.equal(generateIdempotencyKey('orders', 'acme', 'order-123').id, 'orders:acme:order-123');
  const key = manager.generateIdempotencyKey('file-processing', 'acme', 'job-1');
  assert.equal(key.id, 'file-processing:acme:job-1');
  assert.equal(key.ttl, 3_600_000, 'default_ttl from the YAML file');

  const calls: string[] = [];
  manager.registerHook({
    beforeProcessing: (jobId) => {
      calls.push(`before ${jobId}`);
    },
    afterProcessing: (jobId, result) => {
      calls.push(`after ${jobId} ${JSON.stringify(result)}`);
    },
    onDuplicate: (jobId, existing) => {
      calls.push(`duplicate ${jobId} ${JSON.stringify(existing)}`);
    },
  });
  let runs = 0;
  const processFile = async (filepath: string) => {
    runs++;
    return { processed: filepath };
  };
  const first = await manager.processWithIdempotency(key, async () => processFile('/data/a.csv'));
  assert.deepEqual(first, { duplicate: false, result: { processed: '/data/a.csv' } });
  const again = await manager.processWithIdempotency(key, async () => processFile('/data/a.csv'));
  assert.deepEqual(again, { duplicate: true, result: { processed: '/data/a.csv' } });
  assert.equal(runs, 1);
  assert.deepEqual(calls, [
    'before file-processing:acme:job-1',
    'after file-processing:acme:job-1 {"processed":"/data/a.csv"}',
    'duplicate file-processing:acme:job-1 {"processed":"/data/a.csv"}',
  ]);

  const stats = await manager.getDedupStats('file-processing', 'acme');
  assert.deepEqual(
    { ...stats, lastUpdated: stats.lastUpdated instanceof Date },
    {
      queueName: 'file-processing',
      tenantId: 'acme',
      totalKeys: 1,
      hitRate: 0.5,
      totalRequests: 2,
      duplicatesAvoided: 1,
      lastUpdated: true,
    },
  );
});

test('processInTransaction: the write, the outbox event and the key commit together, once', async () => {
  const key = manager.generateIdempotencyKey('shipping', '', 'order-7');
  const ship = () =>
    manager.processInTransaction<{ shipped: boolean }, Schema>(key, async (trx) => {
      await trx.insertInto('shipments').values({ order_id: 'order-7' }).execute();
      await storeInOutbox(trx, { aggregateId: 'order-7', eventType: 'order.shipped', payload: {} });
      return { shipped: true };
    });
  assert.deepEqual(await ship(), { duplicate: false, result: { shipped: true } });
  assert.deepEqual(await ship(), { duplicate: true, result: { shipped: true } });
  const { rows } = await db.pool.query(
    `SELECT (SELECT count(*)::int FROM shipments) AS shipments,
            (SELECT count(*)::int FROM exactly_once_outbox WHERE aggregate_id = 'order-7') AS events`,
  );
  assert.deepEqual(rows[0], { shipments: 1, events: 1 });
});

test('createRelay start/stop delivers an event stored in a Kysely transaction; its high-water mark lives dedup_window and stops a second push', async () => {
  const [event] = await kysely.transaction().execute(async (trx) => {
    await trx.insertInto('orders').values({ id: 'o-1', total: 42 }).execute();
    return [
      await storeInOutbox(trx, {
        aggregateType: 'order',
        aggregateId: 'o-1',
        eventType: 'order.created',
        payload: { orderId: 'o-1', filepath: '/exports/o-1.csv', filesize: 2048 },
        headers: { priority: 'high', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' },
      }),
    ];
  });
  assert.ok(event);
  const list = `${prefix}jobqueue:high_priority`;
  // The relay's commits after a push fail (as if it died after the push), so the push is retried: the lane's
  // high-water mark, written by the push itself, must say the job is there, and live dedup_window.
  await db.pool.query(`
    CREATE FUNCTION test_refuse_publish() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'test: COMMIT of the publish refused'; END $$;
    CREATE TRIGGER test_refuse_publish BEFORE INSERT ON exactly_once_outbox_progress
      FOR EACH ROW WHEN (current_query() LIKE '%exactly_once_outbox_advance%') EXECUTE FUNCTION test_refuse_publish();`);
  const { rows: meta } = await db.pool.query<{ outbox_id: string; lane: number }>(
    "SELECT outbox_id, hashtext('order/o-1') & 15 AS lane FROM exactly_once_outbox_meta",
  );
  const marker = markKey(list, meta[0]?.outbox_id as string, meta[0]?.lane as number);
  const relay = manager.createRelay();
  await relay.start();
  try {
    let raw: string[] = [];
    await waitFor(
      async () => {
        raw = await redis.lrange(list, 0, -1);
        return raw.length > 0;
      },
      15_000,
      'the relay to push the job',
    );
    assert.equal(raw.length, 1);
    const job = JSON.parse(raw[0] as string);
    assert.deepEqual(
      [job.id, job.filepath, job.filesize, job.priority, job.trace_id, job.span_id, job.event_type],
      [
        event.id,
        '/exports/o-1.csv',
        2048,
        'high',
        '4bf92f3577b34da6a3ce929d0e0e4736',
        '00f067aa0ba902b7',
        'order.created',
      ],
    );
    const ttl = await redis.pttl(marker);
    assert.ok(
      ttl > DEDUP_WINDOW_MS - 60_000 && ttl <= DEDUP_WINDOW_MS,
      `high-water mark PTTL ${ttl} ms; outbox.dedup_window is 90m (${DEDUP_WINDOW_MS} ms)`,
    );
    await db.pool.query('DROP TRIGGER test_refuse_publish ON exactly_once_outbox_progress');
    await waitFor(
      async () =>
        (await db.pool.query("SELECT 1 FROM exactly_once_outbox WHERE aggregate_id = 'o-1' AND status = 'published'"))
          .rows.length === 1,
      15_000,
      'the COMMIT to succeed',
    );
    assert.equal(await redis.llen(list), 1, 'the retries found the mark and did not push again');
  } finally {
    await db.pool.query('DROP TRIGGER IF EXISTS test_refuse_publish ON exactly_once_outbox_progress');
    await relay.stop();
  }
  const { rows } = await db.pool.query('SELECT status FROM exactly_once_outbox WHERE id = $1', [event.id]);
  assert.deepEqual(rows, [{ status: 'published' }]);
});
