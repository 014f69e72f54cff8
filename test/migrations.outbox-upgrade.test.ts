import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createMigrator, kyselyFromPool } from '../src/db/migrator.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { exitWithin, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';

// Upgrading a database whose outbox still has the row-state table (0001-0007) to the write-once storage (0008): every
// pending, retrying and failed event survives `exactly-once migrate`, keeps its state and order, and the relay then
// publishes exactly what the old relay would have, once, with no published history pushed again. A producer of this
// version that runs through the upgrade keeps committing, before, during and after it.

const run = promisify(execFile);
const BIN = new URL('../bin/exactly-once.js', import.meta.url).pathname;
const PRODUCER = new URL('./helpers/upgrade-producer.ts', import.meta.url).pathname;

let db: TestDatabase;
let redis: Redis;
let prefix: string;
before(async () => {
  db = await createTestDatabase('outbox_upgrade', { migrate: false });
  redis = new Redis(REDIS_URL);
  prefix = redisPrefix('outbox_upgrade');
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

interface Legacy {
  aggregate: string;
  n: number;
  status: 'pending' | 'published' | 'failed';
  retryCount?: number;
  /** Seconds from now of next_attempt_at (negative: due). */
  nextIn?: number;
  lastError?: string;
}

test('exactly-once migrate brings pending, retrying and failed rows over; the relay then publishes each once, in order', async () => {
  const k = kyselyFromPool(new pg.Pool({ connectionString: db.url, max: 1 }));
  try {
    const result = await createMigrator(k).migrateTo('0007_outbox_dashboard_indexes');
    if (result.error) throw result.error;
  } finally {
    await k.destroy();
  }
  const rows: Legacy[] = [
    { aggregate: 'history', n: 0, status: 'published' },
    { aggregate: 'flow', n: 0, status: 'pending' },
    { aggregate: 'retry', n: 0, status: 'pending', retryCount: 2, nextIn: 3600, lastError: 'WRONGTYPE before' },
    { aggregate: 'history', n: 1, status: 'published' },
    { aggregate: 'flow', n: 1, status: 'pending' },
    { aggregate: 'retry', n: 1, status: 'pending' },
    { aggregate: 'due', n: 0, status: 'pending', retryCount: 1, nextIn: -5, lastError: 'timeout before' },
    { aggregate: 'dead', n: 0, status: 'failed', retryCount: 5, lastError: 'boom' },
    { aggregate: 'due', n: 1, status: 'pending' },
    { aggregate: 'dead', n: 1, status: 'pending' },
    { aggregate: 'flow', n: 2, status: 'pending' },
    { aggregate: 'retry', n: 2, status: 'pending' },
  ];
  const ids: string[] = [];
  for (const r of rows) {
    const { rows: inserted } = await db.pool.query<{ id: string }>(
      `INSERT INTO exactly_once_outbox (aggregate_id, event_type, payload, status, retry_count, next_attempt_at,
                                        last_error, published_at)
       VALUES ($1, 'legacy', jsonb_build_object('n', $2::int), $3, $4, now() + make_interval(secs => $5), $6,
               CASE WHEN $3 = 'published' THEN now() END)
       RETURNING id`,
      [r.aggregate, r.n, r.status, r.retryCount ?? 0, r.nextIn ?? 0, r.lastError ?? null],
    );
    ids.push((inserted[0] as { id: string }).id);
  }
  const idOf = (aggregate: string, n: number) => ids[rows.findIndex((r) => r.aggregate === aggregate && r.n === n)];

  // The upgrade, as an operator runs it.
  const env = { ...process.env, DATABASE_URL: db.url, LOG_LEVEL: 'warn' };
  const migrated = await run(process.execPath, [BIN, 'migrate'], { env });
  assert.match(migrated.stdout, /0008_outbox_write_once/);

  // Every event is still there, in the state it had (the view keeps the old table's columns).
  const states = async () => {
    const { rows: now } = await db.pool.query<{ id: string; status: string; retry_count: number; last_error: string }>(
      'SELECT id, status, retry_count, last_error FROM exactly_once_outbox',
    );
    return new Map(now.map((r) => [r.id, r]));
  };
  const upgraded = await states();
  assert.equal(upgraded.size, rows.length, 'no event lost, none doubled');
  rows.forEach((r, i) => {
    const s = upgraded.get(ids[i] as string);
    assert.equal(s?.status, r.status, `${r.aggregate}#${r.n} keeps its status`);
    assert.equal(s?.retry_count, r.retryCount ?? 0, `${r.aggregate}#${r.n} keeps its retry count`);
  });
  assert.equal(upgraded.get(idOf('dead', 0) as string)?.last_error, 'boom');

  // The new relay: everything due goes out once, in per-aggregate order; history is not pushed again; the retrying
  // aggregate waits for its retry; the failed event stays failed until replayed.
  const queue = `${prefix}jobqueue:low_priority`;
  const file = writeConfigFile('outbox-upgrade', {
    database: { url: db.url },
    redis: { url: REDIS_URL },
    outbox: { queue_pattern: `${prefix}jobqueue:{priority}_priority`, poll_interval: '200ms' },
    metrics: { enabled: false },
  });
  const relay = spawnRelay(file);
  try {
    const due = ['flow:0', 'flow:1', 'flow:2', 'due:0', 'due:1', 'dead:1'];
    const jobs = async () =>
      (await redis.lrange(queue, 0, -1))
        .reverse()
        .map((j) => JSON.parse(j) as { aggregate_id: string; payload: { n: number } })
        .map((j) => `${j.aggregate_id}:${j.payload.n}`);
    await waitFor(async () => (await jobs()).length >= due.length, 20_000, `the due events (${relay.stderr()})`);
    const out = await jobs();
    assert.deepEqual([...out].sort(), [...due].sort(), 'each due event once; history, retry and failed not pushed');
    for (const agg of ['flow', 'due']) {
      const mine = out.filter((j) => j.startsWith(`${agg}:`));
      assert.deepEqual(mine, [...mine].sort(), `${agg} in write order`);
    }
    const after = await states();
    assert.equal(after.get(idOf('retry', 0) as string)?.status, 'pending', 'the retrying event waits for its time');
    assert.equal(after.get(idOf('retry', 2) as string)?.status, 'pending', 'and its aggregate waits behind it');
    assert.equal(after.get(idOf('dead', 0) as string)?.status, 'failed');

    // A replay of the failed event publishes it.
    await run(process.execPath, [BIN, 'outbox', 'retry', idOf('dead', 0) as string, '--config', file], { env });
    await waitFor(async () => (await jobs()).includes('dead:0'), 10_000, 'the replayed event');
    assert.equal((await jobs()).filter((j) => j === 'dead:0').length, 1);
  } finally {
    relay.child.kill('SIGTERM');
    await exitWithin(relay, 15_000);
  }
});

test('a producer of this version writing through `exactly-once migrate` never fails a transaction; each event is relayed once', async () => {
  const live = await createTestDatabase('outbox_upgrade_live', { migrate: false });
  const k = kyselyFromPool(new pg.Pool({ connectionString: live.url, max: 1 }));
  try {
    const result = await createMigrator(k).migrateTo('0007_outbox_dashboard_indexes');
    if (result.error) throw result.error;
  } finally {
    await k.destroy();
  }
  const producer = spawn(process.execPath, ['--import', 'tsx', PRODUCER, live.url], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let committed = 0;
  let summary: { committed: number; failed: number; errors: string[] } | undefined;
  createInterface({ input: producer.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const msg = JSON.parse(line) as { committed: number; done?: boolean; failed: number; errors: string[] };
    committed = msg.committed;
    if (msg.done) summary = msg;
  });
  const exited = new Promise<void>((resolve) => producer.once('exit', () => resolve()));
  const queue = `${prefix}live:jobqueue:low_priority`;
  try {
    await waitFor(async () => committed >= 50, 30_000, 'the producer writing into the old table');
    const env = { ...process.env, DATABASE_URL: live.url, LOG_LEVEL: 'warn' };
    const migrated = await run(process.execPath, [BIN, 'migrate'], { env });
    assert.match(migrated.stdout, /0008_outbox_write_once/);
    // Past the writer's next look at the schema (5 s), so it writes straight into the new tables for a while.
    const atMigrate = committed;
    const since = Date.now();
    await waitFor(
      async () => committed >= atMigrate + 50 && Date.now() - since > 7000,
      60_000,
      'the producer writing after the migration',
    );
  } finally {
    producer.kill('SIGTERM');
    await exited;
  }
  try {
    assert.ok(summary, 'the producer reported');
    assert.deepEqual(summary.errors, [], 'no producer transaction failed');
    assert.equal(summary.failed, 0);
    const transactions = summary.committed;
    const expected = Math.ceil(transactions / 2) + 3 * Math.floor(transactions / 2);
    const { rows } = await live.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM exactly_once_outbox');
    assert.equal(rows[0]?.n, expected, 'every committed event is in the outbox once');

    const file = writeConfigFile('outbox-upgrade-live', {
      database: { url: live.url },
      redis: { url: REDIS_URL },
      outbox: { queue_pattern: `${prefix}live:jobqueue:{priority}_priority`, poll_interval: '200ms' },
      metrics: { enabled: false },
    });
    const relay = spawnRelay(file);
    try {
      await waitFor(
        async () => (await redis.llen(queue)) >= expected,
        30_000,
        `every event relayed (${relay.stderr()})`,
      );
      const jobs = (await redis.lrange(queue, 0, -1)).map((j) => JSON.parse(j) as { id: string });
      assert.equal(jobs.length, expected, 'nothing pushed twice');
      assert.equal(new Set(jobs.map((j) => j.id)).size, expected);
    } finally {
      relay.child.kill('SIGTERM');
      await exitWithin(relay, 15_000);
    }
  } finally {
    await live.close();
  }
});

test('a transaction that began before `exactly-once migrate` and writes its event after it is relayed', async () => {
  const late = await createTestDatabase('outbox_upgrade_late', { migrate: false });
  const k = kyselyFromPool(new pg.Pool({ connectionString: late.url, max: 1 }));
  try {
    const result = await createMigrator(k).migrateTo('0007_outbox_dashboard_indexes');
    if (result.error) throw result.error;
  } finally {
    await k.destroy();
  }
  const app = new pg.Client({ connectionString: late.url });
  await app.connect();
  const queue = `${prefix}late:jobqueue:low_priority`;
  try {
    await app.query('CREATE TABLE late_orders (id integer PRIMARY KEY)');
    // The app's transaction takes its transaction id before the migration does, and is still open when it commits.
    await app.query('BEGIN');
    await app.query('INSERT INTO late_orders VALUES (1)');
    const env = { ...process.env, DATABASE_URL: late.url, LOG_LEVEL: 'warn' };
    await run(process.execPath, [BIN, 'migrate'], { env });
    const [event] = await storeInOutbox(app, [{ aggregateId: 'late', eventType: 'late.event', payload: { n: 1 } }]);
    await app.query('COMMIT');

    const file = writeConfigFile('outbox-upgrade-late', {
      database: { url: late.url },
      redis: { url: REDIS_URL },
      outbox: { queue_pattern: `${prefix}late:jobqueue:{priority}_priority`, poll_interval: '200ms' },
      metrics: { enabled: false },
    });
    const relay = spawnRelay(file);
    try {
      await waitFor(
        async () => (await redis.llen(queue)) >= 1,
        15_000,
        `the late transaction's event (${relay.stderr()})`,
      );
      const jobs = (await redis.lrange(queue, 0, -1)).map((j) => JSON.parse(j) as { id: string });
      assert.deepEqual(
        jobs.map((j) => j.id),
        [event?.id],
      );
    } finally {
      relay.child.kill('SIGTERM');
      await exitWithin(relay, 15_000);
    }
  } finally {
    await app.end();
    await late.close();
  }
});
