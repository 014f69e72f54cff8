// The dashboard's JSON endpoints on real `exactly-once relay` processes over real Postgres and Redis: filters return
// exactly the seeded events, held aggregates name their blocker, dead events group by error and replay by group into
// Redis, table health lists our tables, `cached` follows the hot cache, and writes obey the token, read-only mode
// and the same-origin rule.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { configFromObject, loadConfig } from '../src/config/load-config.js';
import { ConfigError } from '../src/errors.js';
import { IdempotencyService } from '../src/idempotency/index.js';
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

const API = '/api/v1/exactly-once';
const TOKEN = randomBytes(16).toString('hex');

let db: TestDatabase;
let redis: Redis;
let prefix: string;
let relay: HttpRelay;
let readOnlyRelay: HttpRelay;
let high: string;
let low: string;
let special: string;
let deadQueue: string;

interface Call {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
  json: any;
  text: string;
}

async function call(
  base: string,
  method: string,
  path: string,
  options: { body?: unknown; token?: string; headers?: Record<string, string> } = {},
): Promise<Call> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${API}${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  return { status: res.status, text, json: text ? JSON.parse(text) : undefined };
}

const get = (path: string) => call(relay.url, 'GET', path);

/** One seeded row; everything the filters look at is explicit. */
interface Seed {
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  tenant_id: string;
  queue: string | null;
  priority: 'high' | 'low' | null;
  status: 'pending' | 'published' | 'failed';
  retry_count: number;
  last_error: string | null;
  /** Seconds before now. */
  age: number;
  /** Seconds from now; pending retrying rows are not due yet. */
  next_in: number;
}

const base: Seed = {
  aggregate_type: 'order',
  aggregate_id: 'o-1',
  event_type: 'order.created',
  tenant_id: '',
  queue: null,
  priority: null,
  status: 'published',
  retry_count: 0,
  last_error: null,
  age: 60,
  next_in: 0,
};

/** Insert rows as they stand after some history (the writer is tested elsewhere); returns ids in seq order. */
async function seed(rows: Partial<Seed>[]): Promise<{ id: string; row: Seed; created: Date }[]> {
  const full = rows.map((r, n) => ({ ...base, ...r, n }));
  const { rows: inserted } = await db.pool.query<{ id: string; created_at: Date }>(
    `INSERT INTO exactly_once_outbox (aggregate_type, aggregate_id, event_type, payload, headers, tenant_id, queue,
                                      status, retry_count, last_error, created_at, published_at, next_attempt_at)
     SELECT r.aggregate_type, r.aggregate_id, r.event_type, jsonb_build_object('n', r.n),
            CASE WHEN r.priority IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('priority', r.priority) END,
            r.tenant_id, r.queue, r.status, r.retry_count, r.last_error,
            now() - make_interval(secs => r.age),
            CASE WHEN r.status = 'published' THEN now() - make_interval(secs => r.age) END,
            now() + make_interval(secs => r.next_in)
       FROM json_to_recordset($1::json)
            AS r(aggregate_type text, aggregate_id text, event_type text, tenant_id text, queue text, priority text,
                 status text, retry_count int, last_error text, age float8, next_in float8, n int)
      ORDER BY r.n
     RETURNING id, created_at`,
    [JSON.stringify(full)],
  );
  return inserted.map((r, i) => ({ id: r.id, row: full[i] as Seed, created: r.created_at }));
}

/** Every page of GET /outbox with these filters, following next_cursor. */
async function listAll(query: string, limit = 3): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const res = await get(`/outbox?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(res.status, 200, res.text);
    ids.push(...res.json.events.map((e: { id: string }) => e.id));
    cursor = res.json.next_cursor;
    if (!cursor) return ids;
  }
  throw new Error('paging did not end');
}

before(async () => {
  db = await createTestDatabase('dashboard_api');
  redis = new Redis(REDIS_URL);
  prefix = redisPrefix('dash-api');
  high = `${prefix}jobqueue:high_priority`;
  low = `${prefix}jobqueue:low_priority`;
  special = `${prefix}special`;
  deadQueue = `${prefix}dead`;
  const tree = (admin: Record<string, unknown>) => ({
    database: { url: db.url },
    redis: { url: REDIS_URL },
    outbox: { queue_pattern: `${prefix}jobqueue:{priority}_priority`, allowed_queues: [special, deadQueue] },
    idempotency: { key_prefix: `${prefix}idem:` },
    admin,
  });
  [relay, readOnlyRelay] = await Promise.all([
    // A generous start-up deadline: the suite runs four files at once on two cores.
    startHttpRelay(writeConfigFile('dash-api', tree({ token: TOKEN })), [], {}, 90_000),
    startHttpRelay(
      writeConfigFile('dash-api-ro', tree({ token: TOKEN, protect_reads: true })),
      [],
      { ADMIN_READ_ONLY: 'true' },
      90_000,
    ),
  ]);
});

after(async () => {
  await Promise.all([relay?.stop(), readOnlyRelay?.stop()]);
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

describe('GET /outbox filters', () => {
  let seeded: { id: string; row: Seed; created: Date }[];

  before(async () => {
    seeded = await seed([
      { aggregate_id: 'f-1', tenant_id: 'acme', priority: 'high', age: 3600 },
      { aggregate_id: 'f-1', tenant_id: 'acme', event_type: 'order.paid', age: 3000 },
      { aggregate_id: 'f-2', aggregate_type: 'invoice', tenant_id: 'globex', queue: special, age: 2400 },
      { aggregate_id: 'f-1', tenant_id: 'acme', event_type: 'order.shipped', priority: 'low', age: 1800 },
      { aggregate_id: 'f-3', tenant_id: 'globex', queue: high, event_type: 'order.paid', age: 1200 },
      { aggregate_id: 'f-2', aggregate_type: 'invoice', status: 'failed', last_error: 'filter-err', age: 600 },
      { aggregate_id: 'f-1', tenant_id: 'acme', priority: 'high', age: 300 },
    ]);
  });

  /** The seeded ids whose rows satisfy `keep`, oldest first. */
  const where = (keep: (r: Seed, created: Date) => boolean) =>
    seeded.filter((s) => keep(s.row, s.created)).map((s) => s.id);

  test('each filter, alone and combined, returns exactly the matching events, paged in both orders', async () => {
    const cases: [string, (r: Seed, c: Date) => boolean][] = [
      ['aggregate_type=order&aggregate_id=f-1', (r) => r.aggregate_type === 'order' && r.aggregate_id === 'f-1'],
      ['aggregate_id=f-2', (r) => r.aggregate_id === 'f-2'],
      ['event_type=order.paid', (r) => r.event_type === 'order.paid'],
      ['tenant_id=globex', (r) => r.tenant_id === 'globex'],
      ['tenant_id=acme&event_type=order.created', (r) => r.tenant_id === 'acme' && r.event_type === 'order.created'],
      ['status=failed&aggregate_id=f-2', (r) => r.status === 'failed' && r.aggregate_id === 'f-2'],
      ['aggregate_type=invoice&status=published', (r) => r.aggregate_type === 'invoice' && r.status === 'published'],
    ];
    for (const [query, keep] of cases) {
      const expected = where(keep);
      assert.ok(expected.length > 0, query);
      assert.deepEqual(await listAll(query), expected, query);
      assert.deepEqual(await listAll(`${query}&order=desc`, 2), [...expected].reverse(), `${query} desc`);
    }
  });

  test('queue matches the destination: the queue column, else the list the priority header picks', async () => {
    // `high` gets events naming it and events without a queue whose priority is high; `low` also gets the events
    // without a priority (the default); `special` only the event naming it.
    const dest = (r: Seed) => r.queue ?? (r.priority === 'high' ? high : low);
    for (const q of [high, low, special]) {
      assert.deepEqual(
        await listAll(`queue=${encodeURIComponent(q)}`),
        where((r) => dest(r) === q),
        q,
      );
    }
    const none = await get(`/outbox?queue=${encodeURIComponent(`${prefix}nowhere`)}`);
    assert.deepEqual(none.json.events, []);
  });

  test('since and until bound created_at: since inclusive, until exclusive', async () => {
    const third = seeded[2] as { created: Date };
    const fifth = seeded[4] as { created: Date };
    const query = `since=${third.created.toISOString()}&until=${fifth.created.toISOString()}`;
    assert.deepEqual(
      await listAll(query),
      where((_, c) => c >= third.created && c < fifth.created),
    );
    assert.deepEqual(
      await listAll(`until=${third.created.toISOString()}`),
      where((_, c) => c < third.created),
    );
  });

  test('GET /outbox/events/:id shows one event whole; 404 for an unknown id, 400 for a malformed one', async () => {
    const first = seeded[0] as { id: string };
    const res = await get(`/outbox/events/${first.id}`);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.event.id, first.id);
    assert.deepEqual(res.json.event.headers, { priority: 'high' });
    assert.deepEqual(res.json.event.payload, { n: 0 });
    assert.equal(res.json.event.tenant_id, 'acme');
    assert.equal(res.json.event.status, 'published');
    // The write-once outbox keeps no per-event publish time (that was the per-event UPDATE it removed).
    assert.equal(res.json.event.published_at, null);

    const unknown = await get('/outbox/events/00000000-0000-4000-8000-000000000000');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'EO_OUTBOX_EVENT_NOT_FOUND');
    const malformed = await get('/outbox/events/not-a-uuid');
    assert.equal(malformed.status, 400);
    assert.equal(malformed.json.error.field, 'id');
  });
});

describe('held aggregates, dead-event groups and replay by group', () => {
  test('an aggregate behind a retrying event is held and names its blocker; a dead event holds nothing', async () => {
    const rows = await seed([
      // h-1: a retry not due for an hour holds the two events behind it.
      { aggregate_id: 'h-1', status: 'pending', retry_count: 2, last_error: 'WRONGTYPE held', next_in: 3600 },
      { aggregate_id: 'h-1', status: 'pending', event_type: 'order.paid' },
      { aggregate_id: 'h-1', status: 'pending', event_type: 'order.shipped' },
      // h-2: its retry is alone, nothing waits; h-3: its dead event lets the next one flow (the relay publishes it).
      { aggregate_id: 'h-2', status: 'pending', retry_count: 1, last_error: 'x', next_in: 3600 },
      { aggregate_id: 'h-3', status: 'failed', last_error: 'held-test dead' },
      { aggregate_id: 'h-3', status: 'pending' },
    ]);
    const [blocker, w1, w2, , , flowing] = rows as { id: string }[];
    // The relay publishes h-3's later event and leaves h-1's alone.
    await waitFor(
      async () => (await get(`/outbox/events/${flowing?.id}`)).json.event.status === 'published',
      15_000,
      'the event after a dead one to be published',
    );
    const res = await get('/outbox/held');
    assert.equal(res.status, 200, res.text);
    const held = res.json.aggregates.filter((a: { aggregate_id: string }) => a.aggregate_id.startsWith('h-'));
    assert.equal(held.length, 1, res.text);
    assert.equal(held[0].aggregate_type, 'order');
    assert.equal(held[0].aggregate_id, 'h-1');
    assert.equal(held[0].waiting, 2);
    assert.equal(held[0].blocking.id, blocker?.id);
    assert.equal(held[0].blocking.status, 'pending');
    assert.equal(held[0].blocking.retry_count, 2);
    assert.equal(held[0].blocking.last_error, 'WRONGTYPE held');
    assert.ok(Date.parse(held[0].blocking.next_attempt_at) > Date.now() + 3_000_000);
    for (const w of [w1, w2]) assert.equal((await get(`/outbox/events/${w?.id}`)).json.event.status, 'pending');
  });

  test('groups count dead events by exact error; replaying one group publishes exactly its events to Redis', async () => {
    const rows = await seed([
      { aggregate_id: 'g-1', status: 'failed', last_error: 'group A' },
      { aggregate_id: 'g-2', status: 'failed', last_error: 'group B' },
      { aggregate_id: 'g-3', status: 'failed', last_error: 'group A' },
      { aggregate_id: 'g-4', status: 'failed', last_error: 'group A' },
      { aggregate_id: 'g-5', status: 'failed', last_error: 'group B' },
      { aggregate_id: 'g-6', status: 'failed', last_error: 'group A ' },
    ]);
    const ids = rows.map((r) => r.id);
    const res = await get('/outbox/failed/groups');
    assert.equal(res.status, 200, res.text);
    const groups: { error: string; count: number; sample_ids: string[]; first_at: string; last_at: string }[] =
      res.json.groups;
    const find = (error: string) => groups.find((g) => g.error === error);
    assert.deepEqual(find('group A')?.sample_ids, [ids[0], ids[2], ids[3]]);
    assert.equal(find('group A')?.count, 3);
    assert.equal(find('group B')?.count, 2);
    assert.equal(find('group A ')?.count, 1, 'errors are grouped by their exact text');
    assert.ok(groups.indexOf(find('group A') as never) < groups.indexOf(find('group B') as never), 'largest first');
    for (let i = 1; i < groups.length; i++) assert.ok((groups[i - 1]?.count ?? 0) >= (groups[i]?.count ?? 0));
    assert.ok(Date.parse(find('group A')?.first_at ?? '') <= Date.parse(find('group A')?.last_at ?? ''));

    const replay = await call(relay.url, 'POST', '/outbox/retry', { body: { error: 'group A' }, token: TOKEN });
    assert.equal(replay.status, 200, replay.text);
    assert.equal(replay.json.retried, 3);
    const replayed = [ids[0], ids[2], ids[3]];
    await waitFor(
      async () => {
        const jobs = (await redis.lrange(low, 0, -1)).map((j) => JSON.parse(j).id);
        return replayed.every((id) => jobs.includes(id));
      },
      15_000,
      'the replayed group in the Redis list',
    );
    const jobs = (await redis.lrange(low, 0, -1)).map((j) => JSON.parse(j).id);
    for (const id of [ids[1], ids[4], ids[5]]) assert.ok(!jobs.includes(id), 'other groups stay dead');
    const after = await get('/outbox/failed/groups');
    assert.equal(
      after.json.groups.find((g: { error: string }) => g.error === 'group A'),
      undefined,
    );
    assert.equal(after.json.groups.find((g: { error: string }) => g.error === 'group B').count, 2);
  });
});

describe('overview and table health', () => {
  test('overview: backlog, per-minute rates (published from Postgres, failed from the relay), destinations, relays, health', async () => {
    // An event that dies at its first attempt (its list is a string: WRONGTYPE, and it may not retry).
    await redis.set(deadQueue, 'occupied');
    const dying = await storeInOutboxStandalone(
      db.pool,
      { aggregateId: 'ov-dead', eventType: 'e', payload: {}, queue: deadQueue, maxRetries: 0 },
      { allowedQueues: [deadQueue] },
    );
    await waitFor(
      async () => (await get(`/outbox/events/${dying?.id}`)).json.event.status === 'failed',
      15_000,
      'the event to die',
    );
    const res = await get('/overview');
    assert.equal(res.status, 200, res.text);
    const o = res.json;
    assert.equal(o.storage, 'database');
    assert.equal(o.read_only, false);
    assert.deepEqual(o.auth, { writes: true, reads: false });
    const counts = await db.pool.query<{ pending: number; failed: number; retrying: number }>(
      `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending,
              count(*) FILTER (WHERE status = 'failed')::int AS failed,
              count(*) FILTER (WHERE status = 'pending' AND retry_count > 0)::int AS retrying FROM exactly_once_outbox`,
    );
    const c = counts.rows[0] as { pending: number; failed: number; retrying: number };
    assert.equal(o.backlog.pending, c.pending);
    assert.equal(o.backlog.failed, c.failed);
    assert.equal(o.backlog.retrying, c.retrying);
    assert.ok(o.backlog.due <= o.backlog.pending);
    assert.ok(o.backlog.oldest_pending_age_seconds > 0, 'the held events are pending');

    assert.equal(o.rates.bucket_seconds, 60);
    assert.ok(o.rates.points.length >= 15 && o.rates.points.length <= 16, String(o.rates.points.length));
    const sum = (k: string, points = o.rates.points) =>
      points.reduce((n: number, p: Record<string, number>) => n + (p[k] ?? 0), 0);
    // Published counts come from every relay (each writes its per-minute counts to Postgres, at most every 5 s):
    // three more events show up in the chart whichever relay published them.
    const before = sum('published');
    await storeInOutboxStandalone(
      db.pool,
      [1, 2, 3].map((n) => ({ aggregateId: `ov-${n}`, eventType: 'e', payload: { n } })),
    );
    let points = o.rates.points;
    await waitFor(
      async () => {
        points = (await get('/overview')).json.rates.points;
        return sum('published', points) >= before + 3;
      },
      20_000,
      'the three events in the published rate',
    );
    // Deaths are counted by the relay process that saw them; two relays share this database, so look at both.
    const other = (await call(readOnlyRelay.url, 'GET', '/overview', { token: TOKEN })).json;
    const otherFailed = other.rates.points.reduce((n: number, p: { failed: number }) => n + p.failed, 0);
    assert.equal(sum('failed') + otherFailed, 1, JSON.stringify([o.rates.points, other.rates.points]));
    assert.match(o.rates.source.failed, /this relay/);

    const lowDest = (await get('/overview')).json.destinations.find((d: { queue: string }) => d.queue === low);
    assert.ok(lowDest.published_15m >= 3, JSON.stringify(o.destinations));
    const deadDest = o.destinations.find((d: { queue: string }) => d.queue === deadQueue);
    assert.equal(deadDest.failed, 1);
    assert.equal(o.relays.awake, 2, 'both relay processes of this database');
    assert.equal(o.health.postgres.ok, true);
    assert.equal(o.health.redis.ok, true);
  });

  test('tables: sizes, tuples and indexes of the outbox and idempotency tables; the oldest open transaction', async () => {
    const holder = new pg.Client({ connectionString: db.url, application_name: 'dash-api-test holder' });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT txid_current()');
      const { rows } = await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      let res: Call | undefined;
      await waitFor(
        async () => {
          res = await get('/tables');
          return res.json.oldest_transaction?.pid === rows[0]?.pid;
        },
        10_000,
        'the open transaction to be the oldest',
      );
      const body = (res as Call).json;
      assert.equal(body.oldest_transaction.application_name, 'dash-api-test holder');
      assert.ok(body.oldest_transaction.age_seconds >= 0);
      const names = body.tables.map((t: { name: string }) => t.name);
      assert.deepEqual(names, [
        ...Array.from({ length: 8 }, (_, p) => `exactly_once_outbox_events_${p}`),
        'exactly_once_outbox_parked',
        'exactly_once_outbox_progress',
        'idempotency_keys',
        'idempotency_keys_stats',
        'exactly_once_maintenance',
      ]);
      // Partition 0 holds the events written so far; each partition has the id, (lane, seq) and (lane, txid) indexes.
      const current = body.tables[0];
      assert.ok(current.total_bytes >= current.table_bytes + current.index_bytes - 8192 * 4);
      assert.ok(current.live_tuples > 0 || current.table_bytes > 0);
      const indexes = current.indexes.map((i: { name: string }) => i.name);
      assert.equal(indexes.length, 3, String(indexes));
      assert.ok(indexes.includes('exactly_once_outbox_events_0_id'), String(indexes));
      assert.equal(typeof body.cleanup.outbox_rows_due, 'number');
      assert.equal(typeof body.cleanup.idempotency_keys_expired, 'number');
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      await holder.end();
    }
  });
});

describe('idempotency lookup says whether the hot cache holds the key', () => {
  test('cached: false after a hand-made key, true after a duplicate check, false again after delete and re-create', async () => {
    const config = configFromObject({
      database: { url: db.url },
      redis: { url: REDIS_URL },
      idempotency: { key_prefix: `${prefix}idem:` },
    });
    const service = new IdempotencyService({ config, redis });
    try {
      const key = service.generateIdempotencyKey('dash-q', 'acme', 'k-1');
      const path = `/idempotency?queue=dash-q&tenant=acme&key=${encodeURIComponent(key.id)}`;
      const create = () =>
        call(relay.url, 'POST', '/idempotency', {
          body: { queue_name: 'dash-q', tenant_id: 'acme', key_id: key.id, value: { done: true } },
          token: TOKEN,
        });
      assert.equal((await create()).status, 201);
      const first = await get(path);
      assert.equal(first.status, 200, first.text);
      assert.equal(first.json.cached, false);
      // A worker's duplicate check reads Postgres and copies the completed key into the Redis hot cache.
      let ran = false;
      const outcome = await service.processWithIdempotency(key, async () => {
        ran = true;
      });
      assert.equal(outcome.duplicate, true);
      assert.equal(ran, false);
      assert.equal((await get(path)).json.cached, true);

      assert.equal((await call(relay.url, 'DELETE', path, { token: TOKEN })).status, 204);
      assert.equal((await get(path)).status, 404);
      assert.equal((await create()).status, 201);
      assert.equal((await get(path)).json.cached, false, 'delete dropped the cached copy');
    } finally {
      await service.close();
    }
  });
});

describe('malformed query parameters: 400 naming the field', () => {
  const cases: [string, string][] = [
    ['/outbox?since=yesterday', 'since'],
    ['/outbox?until=2026-05-01T10:00:00', 'until'],
    ['/outbox?since=2026-05-02&until=2026-05-01', 'until'],
    ['/outbox?order=sideways', 'order'],
    ['/outbox?limit=0', 'limit'],
    ['/outbox?cursor=bm9wZQ', 'cursor'],
    ['/outbox?aggregate=o-1', 'aggregate'],
    ['/outbox?queue=a&queue=b', 'queue'],
    ['/outbox/held?limit=x', 'limit'],
    ['/outbox/failed/groups?limit=501', 'limit'],
    ['/overview?x=1', 'x'],
    ['/tables?verbose=1', 'verbose'],
    ['/outbox/events/00000000-0000-4000-8000-000000000000?x=1', 'x'],
  ];
  for (const [path, field] of cases) {
    test(`GET ${path} -> 400 ${field}`, async () => {
      const res = await get(path);
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.error.code, 'EO_INVALID_PARAMETER');
      assert.equal(res.json.error.field, field);
    });
  }

  test('POST /outbox/retry: error must be text or null, and only one selection at a time', async () => {
    const bad = await call(relay.url, 'POST', '/outbox/retry', { body: { error: 5 }, token: TOKEN });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json.error.field, 'error');
    const both = await call(relay.url, 'POST', '/outbox/retry', {
      body: { error: 'x', all_failed: true },
      token: TOKEN,
    });
    assert.equal(both.status, 400, both.text);
  });
});

describe('who may write', () => {
  const deadCount = async () =>
    (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'failed'`))
      .rows[0]?.n;

  test('a replay by group needs the token; reads stay open without protect_reads', async () => {
    await seed([{ aggregate_id: 't-1', status: 'failed', last_error: 'token test' }]);
    const before = await deadCount();
    const refused = await call(relay.url, 'POST', '/outbox/retry', { body: { error: 'token test' } });
    assert.equal(refused.status, 401);
    assert.equal(refused.json.error.code, 'EO_ADMIN_UNAUTHORIZED');
    const wrong = await call(relay.url, 'POST', '/outbox/retry', { body: { error: 'token test' }, token: 'nope' });
    assert.equal(wrong.status, 401);
    assert.equal(await deadCount(), before);
    for (const path of ['/overview', '/outbox/held', '/outbox/failed/groups', '/tables']) {
      assert.equal((await get(path)).status, 200, path);
    }
  });

  test('a write from a page of another origin is refused, token or not; the same origin passes', async () => {
    const before = await deadCount();
    const body = { error: 'token test' };
    const foreign: Record<string, string>[] = [
      { origin: 'http://evil.example' },
      { origin: 'null' },
      { origin: `http://localhost:${relay.port}` },
      { 'sec-fetch-site': 'cross-site' },
    ];
    for (const headers of foreign) {
      const res = await call(relay.url, 'POST', '/outbox/retry', { body, token: TOKEN, headers });
      assert.equal(res.status, 403, `${JSON.stringify(headers)}: ${res.text}`);
      assert.equal(res.json.error.code, 'EO_ADMIN_FOREIGN_ORIGIN');
    }
    const del = await call(relay.url, 'DELETE', '/idempotency?queue=q&key=k', {
      token: TOKEN,
      headers: { origin: 'http://evil.example' },
    });
    assert.equal(del.status, 403);
    assert.equal(await deadCount(), before);
    const same = await call(relay.url, 'POST', '/outbox/retry', {
      body,
      token: TOKEN,
      headers: { origin: relay.url, 'sec-fetch-site': 'same-origin' },
    });
    assert.equal(same.status, 200, same.text);
    assert.equal(same.json.retried, 1);
  });

  test('ADMIN_READ_ONLY takes true or false only: anything else stops the start, naming it', () => {
    assert.equal(loadConfig(undefined, { env: { ADMIN_READ_ONLY: 'TRUE' } }).admin.readOnly, true);
    assert.equal(loadConfig(undefined, { env: { ADMIN_READ_ONLY: 'false' } }).admin.readOnly, false);
    assert.equal(loadConfig(undefined, { env: {} }).admin.readOnly, false);
    for (const value of ['yes', '1', '']) {
      assert.throws(
        () => loadConfig(undefined, { env: { ADMIN_READ_ONLY: value } }),
        (err: unknown) => err instanceof ConfigError && err.path === 'ADMIN_READ_ONLY',
        value,
      );
    }
  });

  test('read-only mode (ADMIN_READ_ONLY=true) refuses every write, even with the token, and says so', async () => {
    await seed([{ aggregate_id: 'ro-1', status: 'failed', last_error: 'read-only test' }]);
    const before = await deadCount();
    const ro = readOnlyRelay.url;
    const writes: [string, string, unknown][] = [
      ['POST', '/outbox/retry', { error: 'read-only test' }],
      ['POST', '/outbox/retry', { all_failed: true }],
      ['POST', '/outbox', undefined],
      ['POST', '/cleanup', undefined],
      ['POST', '/idempotency', { queue_name: 'ro', key_id: 'k', value: 1 }],
      ['DELETE', '/idempotency?queue=ro&key=k', undefined],
    ];
    for (const [method, path, body] of writes) {
      const res = await call(ro, method, path, { token: TOKEN, ...(body === undefined ? {} : { body }) });
      assert.equal(res.status, 403, `${method} ${path}: ${res.text}`);
      assert.equal(res.json.error.code, 'EO_ADMIN_READ_ONLY');
    }
    assert.equal(await deadCount(), before);
    // protect_reads on this relay: the overview needs the token, and reports both settings.
    assert.equal((await call(ro, 'GET', '/overview')).status, 401);
    const overview = await call(ro, 'GET', '/overview', { token: TOKEN });
    assert.equal(overview.status, 200, overview.text);
    assert.equal(overview.json.read_only, true);
    assert.deepEqual(overview.json.auth, { writes: true, reads: true });
  });
});
