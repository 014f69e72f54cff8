import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { sql } from 'kysely';
import { PgBoss } from 'pg-boss';
import { configFromObject } from '../src/config/load-config.js';
import { ConfigError } from '../src/errors.js';
import { Manager } from '../src/manager.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { runCli } from './helpers/cli-process.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';

// The pg-boss destination (issue 12, G3/G4/G6) from a user's side: config errors name their key; a relay process moves events
// into pg-boss queues the user created; an event for a missing queue or a name pg-boss refuses fails on its own while
// the rest flow; a pg-boss worker applies every event exactly once with processInTransaction.

describe('outbox.pg_boss config', () => {
  const pgBoss = (outbox: Record<string, unknown>) => () =>
    configFromObject({ outbox: { publisher: 'pg-boss', pg_boss: { queue: 'jobs.{priority}' }, ...outbox } });
  const names = (path: string, pattern: RegExp) => (err: unknown) => {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.path, path);
    assert.match(err.message, pattern);
    return true;
  };

  test('an unknown or invalid key is refused, naming the key', () => {
    assert.throws(
      pgBoss({ pg_boss: { queue: 'jobs.{priority}', queu: 'x' } }),
      names('exactly_once.outbox.pg_boss.queu', /unknown key/),
    );
    assert.throws(
      pgBoss({ pg_boss: { queue_options: { policy: 'short' } } }),
      names('exactly_once.outbox.pg_boss.queue_options.policy', /standard|key_strict_fifo/),
    );
    assert.throws(
      pgBoss({ pg_boss: { schema: 'Bad-Schema' } }),
      names('exactly_once.outbox.pg_boss.schema', /SQL identifier/),
    );
    assert.throws(
      pgBoss({ pg_boss: { queue_options: { expire_in: '500ms' } } }),
      names('exactly_once.outbox.pg_boss.queue_options.expire_in', /at least 1s/),
    );
    assert.throws(
      pgBoss({ pg_boss: { queue_options: { dead_letter: 'dead:letters' } } }),
      names('exactly_once.outbox.pg_boss.queue_options.dead_letter', /pg-boss queue name/),
    );
    assert.throws(
      pgBoss({ pg_boss: { create_queues: 'yes' } }),
      names('exactly_once.outbox.pg_boss.create_queues', /boolean/),
    );
  });

  test('a queue name pg-boss would refuse is caught at load, naming the key that produced it', () => {
    assert.throws(
      pgBoss({ pg_boss: { queue: 'jobs:{priority}' } }),
      names('exactly_once.outbox.pg_boss.queue', /"jobs:high".*pg-boss refuses/),
    );
    // The list publisher's default `jobqueue:{priority}_priority` does not fit pg-boss: the message says what to set.
    assert.throws(
      () => configFromObject({ outbox: { publisher: 'pg-boss' } }),
      names('exactly_once.outbox.queue_pattern', /set outbox\.pg_boss\.queue/),
    );
    const ok = configFromObject({ outbox: { publisher: 'pg-boss', queue_pattern: 'jobqueue.{priority}_priority' } });
    assert.equal(ok.outbox.pgBoss.schema, 'pgboss');
    assert.equal(ok.outbox.pgBoss.createQueues, false);
    assert.equal(ok.outbox.pgBoss.queueOptions.expireIn, 900_000);
  });

  test('the relay refuses to start on a bad pg_boss key, and says which', async () => {
    const file = writeConfigFile('pgboss-bad', { outbox: { publisher: 'pg-boss', pg_boss: { create_queue: true } } });
    const r = await runCli(['relay', '--config', file], {});
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /exactly_once\.outbox\.pg_boss\.create_queue: unknown key/);
  });
});

describe('a relay process publishing to pg-boss', () => {
  let db: TestDatabase;
  let boss: PgBoss;
  let relay: RelayProcess;
  let configFile: string;
  const prefix = redisPrefix('pgboss');
  const redis = new Redis(REDIS_URL);
  const outbox = {
    publisher: 'pg-boss',
    pg_boss: { queue: 'orders.{priority}' },
    allowed_queues: ['*'],
    max_retries: 3,
    retry_backoff: { initial_delay: '1s', max_delay: '1s', jitter: false },
    poll_interval: '100ms',
  };

  before(async () => {
    db = await createTestDatabase('pgboss');
    await db.pool.query(
      'CREATE TABLE counters (aggregate_id text PRIMARY KEY, applied int NOT NULL, seen int[] NOT NULL)',
    );
    // The user's own pg-boss (a worker's): its schema, and the queue the relay writes to. key_strict_fifo runs one
    // aggregate's jobs one at a time, in order; retried jobs come back at once (retryDelay 0).
    boss = new PgBoss({ connectionString: db.url, max: 3, supervise: false, schedule: false });
    boss.on('error', () => {});
    await boss.start();
    await boss.createQueue('orders.low', { policy: 'key_strict_fifo', retryLimit: 3 });
    await boss.createQueue('orders.high');
    configFile = writeConfigFile('pgboss', { database: { url: db.url }, redis: { url: REDIS_URL }, outbox });
    relay = spawnRelay(configFile, [], { LOG_LEVEL: 'info' });
    // Loading the CLI takes seconds on a busy machine; the tests' deadlines are for the relay's work.
    await waitFor(() => relay.stderr().includes('relay started'), 120_000, 'the relay to start');
  });
  after(async () => {
    relay?.child.kill('SIGKILL');
    if (relay) await exitWithin(relay, 10_000);
    await boss?.stop({ graceful: false, close: true });
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
    await db?.close();
  });

  const states = async (ids: string[]) =>
    (
      await db.pool.query<{ id: string; status: string; retry_count: number; last_error: string | null }>(
        'SELECT id, status, retry_count, last_error FROM exactly_once_outbox WHERE id = ANY($1::uuid[]) ORDER BY seq',
        [ids],
      )
    ).rows;
  const jobCount = async (ids: string[]) =>
    (await db.pool.query('SELECT count(*)::int AS n FROM pgboss.job WHERE id = ANY($1::uuid[])', [ids])).rows[0].n;

  test('a missing queue or a name pg-boss refuses fails that event; the others flow; a replay delivers it', async () => {
    const [missing, behindMissing, badName, ...good] = await storeInOutboxStandalone(
      db.pool,
      [
        { aggregateId: 'm', eventType: 'order.placed', payload: {}, queue: 'refunds.low' },
        { aggregateId: 'm', eventType: 'order.paid', payload: {}, headers: { priority: 'high' } },
        { aggregateId: 'b', eventType: 'order.placed', payload: {}, queue: 'bad:name' },
        ...Array.from({ length: 5 }, (_, n) => ({
          aggregateId: 'g',
          eventType: 'order.placed',
          payload: { n },
          headers: { priority: 'high' },
        })),
      ],
      configFromObject({ outbox }).outbox,
    );
    const [m, bm, b] = [missing, behindMissing, badName].map((e) => e?.id as string) as [string, string, string];
    const goodIds = good.map((e) => e.id);

    // While the missing queue's event is being retried, the next event of its aggregate waits behind it.
    await waitFor(
      async () => {
        const [first, second] = await states([m, bm]);
        if (first?.status !== 'pending' || first.retry_count < 1) return false;
        assert.equal(second?.status, 'pending', 'the aggregate waits behind its failing event');
        return true;
      },
      60_000,
      'the missing-queue event to be retried',
    );
    assert.equal(await jobCount([bm]), 0);
    await waitFor(async () => (await jobCount(goodIds)) === goodIds.length, 60_000, 'the other events in pg-boss');
    assert.deepEqual(
      (await states(goodIds)).map((s) => s.status),
      goodIds.map(() => 'published'),
    );

    const [bad] = await states([b]);
    assert.equal(bad?.status, 'failed', 'a name pg-boss refuses fails at once: no retry can fix it');
    assert.match(bad?.last_error ?? '', /"bad:name" is not a pg-boss queue name/);
    await waitFor(
      async () => (await states([m]))[0]?.status === 'failed',
      60_000,
      'the missing-queue event to end failed',
    );
    const [dead] = await states([m]);
    assert.equal(dead?.retry_count, 4, 'tried 1 + max_retries times');
    assert.match(dead?.last_error ?? '', /pg-boss queue "refunds\.low" does not exist.*create_queues/);
    // Once its predecessor is dead, the aggregate moves on.
    await waitFor(async () => (await jobCount([bm])) === 1, 60_000, 'the next event of the aggregate');
    assert.equal(await jobCount([m, b]), 0, 'failed events have no job');

    // The operator creates the queue and replays the event: it is delivered, once.
    await boss.createQueue('refunds.low');
    const replay = await runCli(['outbox', 'retry', m, '--config', configFile], {});
    assert.equal(replay.code, 0, replay.stderr);
    await waitFor(async () => (await states([m]))[0]?.status === 'published', 60_000, 'the replayed event');
    assert.equal(await jobCount([m]), 1);
  });

  test('a pg-boss worker with processInTransaction applies each event exactly once, in aggregate order', async () => {
    const AGGREGATES = 5;
    const PER_AGGREGATE = 10;
    const events = await storeInOutboxStandalone(
      db.pool,
      Array.from({ length: AGGREGATES * PER_AGGREGATE }, (_, i) => ({
        aggregateId: `acct-${i % AGGREGATES}`,
        eventType: 'ledger.entry',
        payload: { n: Math.floor(i / AGGREGATES) },
      })),
      configFromObject({ outbox }).outbox,
    );
    const manager = new Manager(
      configFromObject({ database: { url: db.url }, redis: { url: REDIS_URL }, idempotency: { key_prefix: prefix } }),
      { pool: db.pool, redis },
    );
    let runs = 0;
    let duplicates = 0;
    let redelivered = 0;
    try {
      const done = async () =>
        (await db.pool.query('SELECT coalesce(sum(applied), 0)::int AS n FROM counters')).rows[0].n;
      await waitFor(
        async () => {
          const jobs = await boss.fetch<{ id: string; aggregate_id: string; payload: { n: number } }>('orders.low', {
            batchSize: 20,
          });
          for (const job of jobs) {
            const key = manager.generateIdempotencyKey('orders.low', '', job.data.id);
            const r = await manager.processInTransaction(key, async (trx) => {
              runs++;
              await trx
                .insertInto('counters')
                .values({ aggregate_id: job.data.aggregate_id, applied: 1, seen: [job.data.payload.n] })
                .onConflict((oc) =>
                  oc.column('aggregate_id').doUpdateSet((eb) => ({
                    applied: eb('counters.applied', '+', 1),
                    seen: sql`array_append(counters.seen, ${job.data.payload.n}::int)`,
                  })),
                )
                .execute();
            });
            if (r.duplicate) duplicates++;
            // Every fifth first delivery "crashes" after its transaction committed and before pg-boss heard of it:
            // pg-boss delivers it again.
            if (!r.duplicate && job.data.payload.n % 5 === 0) {
              redelivered++;
              await boss.fail('orders.low', job.id, { reason: 'worker died after commit' });
            } else {
              await boss.complete('orders.low', job.id);
            }
          }
          return (await done()) >= events.length && jobs.length === 0;
        },
        120_000,
        'every event applied',
      );
    } finally {
      await manager.close();
    }
    const { rows } = await db.pool.query<{ aggregate_id: string; applied: number; seen: number[] }>(
      'SELECT aggregate_id, applied, seen FROM counters ORDER BY aggregate_id',
    );
    assert.equal(rows.length, AGGREGATES);
    const inOrder = Array.from({ length: PER_AGGREGATE }, (_, n) => n);
    for (const r of rows) {
      assert.equal(r.applied, PER_AGGREGATE, `${r.aggregate_id}: each event applied once`);
      assert.deepEqual(r.seen, inOrder, `${r.aggregate_id}: applied in write order`);
    }
    assert.equal(runs, events.length, 'the processor ran once per event');
    assert.ok(redelivered > 0 && duplicates === redelivered, `${redelivered} redeliveries, ${duplicates} duplicates`);
  });

  test('SIGTERM stops the relay and its pg-boss instance: the process exits 0', async () => {
    relay.child.kill('SIGTERM');
    const exit = await exitWithin(relay, 30_000);
    assert.equal(exit.code, 0, relay.stderr());
  });
});
