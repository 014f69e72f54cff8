import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type HttpRelay, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';
import { spawnRedisServer, type TestRedis } from './helpers/test-servers.js';

// `/readyz` of a spawned relay says whether it can publish (issue 8 item 4): a Redis that answers PING but refuses
// writes is not ready, and operators' reads run on a pool of their own, so they neither slow publishing nor make
// the relay look down.

interface ReadyBody {
  status: string;
  checks: {
    postgres: { ok: boolean; error?: string };
    redis: { ok: boolean; error?: string };
    relay?: { ok: boolean; breaker: string; error?: string; last_error?: string };
  };
  error?: { code: string; message: string };
}

let db: TestDatabase;
let redis: Redis;
const prefix = redisPrefix('readiness');

before(async () => {
  db = await createTestDatabase('readiness');
  redis = new Redis(REDIS_URL);
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

async function readyz(relay: HttpRelay): Promise<{ status: number; body: ReadyBody }> {
  const res = await relay.get('/readyz');
  return { status: res.status, body: res.json() as ReadyBody };
}

describe('a Redis that refuses writes', () => {
  let full: TestRedis;
  let relay: HttpRelay | undefined;
  before(async () => {
    full = await spawnRedisServer(['--maxmemory', '64mb', '--maxmemory-policy', 'noeviction']);
  });
  after(async () => {
    await relay?.stop();
    await full.stop();
  });

  test('makes /readyz 503 with the reason, then the open breaker too; ready again once Redis takes writes', async () => {
    const file = writeConfigFile('readiness-oom', {
      database: { url: db.url },
      redis: { url: full.url },
      outbox: {
        queue_pattern: `${prefix}jobqueue:{priority}_priority`,
        circuit_breaker: { failure_threshold: 2, open_for: '1m' },
      },
    });
    relay = await startHttpRelay(file);
    const first = await readyz(relay);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.checks.relay?.breaker, 'closed');

    // Fill it: under noeviction, Redis answers every write with OOM from here on, while PING still says PONG.
    const filler = new Redis(full.url);
    try {
      // Full for good: 4 MB of data, then a 1 MB limit. (Filling up to the limit leaves Redis at its edge, where
      // freed client buffers let the next small write through.)
      const value = 'x'.repeat(64 * 1024);
      for (let i = 0; i < 64; i++) await filler.set(`${prefix}fill:${i}`, value);
      await filler.config('SET', 'maxmemory', '1mb');
      await assert.rejects(filler.set(`${prefix}tiny`, '1'), /OOM/);
      assert.equal(await filler.ping(), 'PONG');

      const refused = await readyz(relay);
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.equal(refused.body.status, 'not_ready');
      assert.equal(refused.body.checks.postgres.ok, true);
      assert.equal(refused.body.checks.redis.ok, false);
      assert.match(refused.body.checks.redis.error ?? '', /OOM/);
      assert.match(refused.body.error?.message ?? '', /redis: .*OOM/);

      // An event to publish: its pushes fail on OOM, the breaker opens, and /readyz says so too.
      await storeInOutboxStandalone(db.pool, { aggregateId: 'oom', eventType: 'e', payload: {} });
      let open: ReadyBody | undefined;
      await waitFor(
        async () => {
          open = (await readyz(relay as HttpRelay)).body;
          return open.checks.relay?.breaker === 'open';
        },
        30_000,
        'the breaker to open',
      ).catch((err: Error) => {
        throw new Error(`${err.message}; last /readyz: ${JSON.stringify(open)}\n${relay?.stderr()}`);
      });
      assert.equal(open?.checks.relay?.ok, false);
      assert.match(open?.checks.relay?.last_error ?? '', /OOM/);
      assert.match(open?.error?.message ?? '', /relay: /);

      await filler.config('SET', 'maxmemory', '64mb');
      // Redis takes writes again; the relay is ready once its breaker lets a trial batch through (here after 1m),
      // so only the Redis check is expected back.
      await waitFor(async () => (await readyz(relay as HttpRelay)).body.checks.redis.ok, 10_000, 'redis check ok');
    } finally {
      filler.disconnect();
    }
  });
});

describe('admin reads have a pool of their own', () => {
  let relay: HttpRelay | undefined;
  after(async () => {
    await relay?.stop();
  });

  test('twenty GET /outbox?limit=1000 at once never run on the relay connections, and events keep flowing', async () => {
    // 3,000 published rows to page through.
    await db.pool.query(
      `INSERT INTO exactly_once_outbox (aggregate_id, event_type, payload, status, published_at)
       SELECT 'old-' || g, 'e', jsonb_build_object('n', g, 'pad', repeat('p', 200)), 'published', now()
         FROM generate_series(1, 3000) g`,
    );
    const file = writeConfigFile('readiness-reads', {
      database: { url: db.url },
      redis: { url: REDIS_URL },
      outbox: { queue_pattern: `${prefix}jobqueue:{priority}_priority` },
    });
    relay = await startHttpRelay(file);

    // Watch every backend of this database while the reads run: which pool (application_name) runs the list query.
    const watcher = new pg.Client({ connectionString: db.url });
    await watcher.connect();
    let watching = true;
    let maxAdminBackends = 0;
    let adminListQueries = 0;
    const relayListQueries: string[] = [];
    const watching$ = (async () => {
      while (watching) {
        const { rows } = await watcher.query<{ app: string; query: string; state: string }>(
          `SELECT application_name AS app, query, state FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()`,
        );
        maxAdminBackends = Math.max(maxAdminBackends, rows.filter((r) => r.app === 'exactly-once admin').length);
        for (const r of rows) {
          // listOutboxEvents's keyset query (src/outbox/inspect.ts), which nothing but GET /outbox runs.
          if (r.state !== 'active' || !r.query.includes('/* exactly-once: list outbox */')) continue;
          if (r.app === 'exactly-once admin') adminListQueries++;
          else relayListQueries.push(`${r.app}: ${r.query.slice(0, 80)}`);
        }
      }
    })();

    // Events flow meanwhile; every one must be published.
    let producing = true;
    const produced: string[] = [];
    const producer = (async () => {
      for (let i = 0; producing && i < 500; i++) {
        const e = await storeInOutboxStandalone(db.pool, {
          aggregateId: `live-${i % 7}`,
          eventType: 'e',
          payload: { i },
        });
        produced.push(e.id);
      }
    })();
    try {
      for (let round = 0; round < 2; round++) {
        const pages = await Promise.all(
          Array.from(
            { length: 20 },
            () =>
              relay?.get('/api/v1/exactly-once/outbox?limit=1000') as Promise<{
                status: number;
                json(): unknown;
              }>,
          ),
        );
        for (const page of pages) {
          assert.equal(page.status, 200);
          assert.equal((page.json() as { events: unknown[] }).events.length, 1000);
        }
      }
    } finally {
      producing = false;
      await producer;
      watching = false;
      await watching$;
      await watcher.end();
    }
    assert.ok(adminListQueries > 0, 'the watcher saw the reads (so it would have seen them on the relay pool too)');
    assert.deepEqual(relayListQueries, [], 'no list query ran on a relay connection');
    assert.ok(maxAdminBackends <= 2, `admin backends at once: ${maxAdminBackends}`);
    await waitFor(
      async () =>
        (
          await db.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM exactly_once_outbox WHERE id = ANY($1::uuid[]) AND status = 'published'`,
            [produced],
          )
        ).rows[0]?.n === produced.length,
      30_000,
      'every event produced during the reads published',
    );
  });

  test('a page of big events ends at about 1 MiB, with a cursor to the rest', async () => {
    assert.ok(relay, 'the previous test started the relay');
    // Five dead events with ~300 KB of metadata each: limit=1000 would send all of them in one piece. (Payloads are
    // listed as 1 KiB previews; metadata is listed whole.)
    await db.pool.query(
      `INSERT INTO exactly_once_outbox (aggregate_id, event_type, payload, metadata, status)
       SELECT 'big-' || g, 'e', '{}', jsonb_build_object('blob', repeat('b', 300000)), 'failed'
         FROM generate_series(1, 5) g`,
    );
    const sizes: number[] = [];
    let cursor: string | null = '';
    while (cursor !== null) {
      const page: { status: number; text: string; json(): unknown } = await (relay as HttpRelay).get(
        `/api/v1/exactly-once/outbox?status=failed&limit=1000${cursor ? `&cursor=${cursor}` : ''}`,
      );
      assert.equal(page.status, 200, page.text);
      const body = page.json() as { events: { aggregate_id: string }[]; next_cursor: string | null };
      sizes.push(body.events.length);
      cursor = body.next_cursor;
      assert.ok(sizes.length <= 5, 'paging ends');
    }
    assert.deepEqual(sizes, [3, 2]);
  });

  test('reads stuck behind a table lock neither make /readyz report Postgres down nor hang', async () => {
    assert.ok(relay, 'the previous test started the relay');
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    const reads: Promise<{ status: number }>[] = [];
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE exactly_once_outbox IN ACCESS EXCLUSIVE MODE');
      for (let i = 0; i < 5; i++) reads.push((relay as HttpRelay).get('/api/v1/exactly-once/outbox?limit=1000'));
      await waitFor(
        async () =>
          (
            await db.pool.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'exactly-once admin' AND wait_event_type = 'Lock'`,
            )
          ).rows[0]?.n === 2,
        20_000,
        'both admin connections waiting on the lock',
      );
      const ready = await readyz(relay as HttpRelay);
      assert.equal(ready.status, 200, JSON.stringify(ready.body));
      assert.equal(ready.body.checks.postgres.ok, true);
      // The lock is still held: a read answers (its statement timed out) instead of waiting for it.
      const first = await Promise.race([
        reads[0] as Promise<{ status: number }>,
        new Promise<{ status: number }>((_, reject) =>
          setTimeout(() => reject(new Error('a read waited 30 s behind the lock')), 30_000),
        ),
      ]);
      assert.ok(first.status >= 500, `status ${first.status}`);
    } finally {
      await locker.query('ROLLBACK').catch(() => {});
      await locker.end();
      await Promise.allSettled(reads);
    }
  });
});
