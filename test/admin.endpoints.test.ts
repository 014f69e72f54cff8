import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import pg from 'pg';
import { toHttpError } from '../src/admin/http-errors.js';
import { exactlyOnceAdmin } from '../src/admin/plugin.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type AdminFixture, adminFixture } from './helpers/admin-fixture.js';
import { closeCurrentPartition, outboxCounts, seedOutbox } from './helpers/outbox-rows.js';
import { freePort, waitFor } from './helpers/services.js';

const API = '/api/v1/exactly-once';
const DAY = 86_400_000;
let fx: AdminFixture;

before(async () => {
  fx = await adminFixture('admin_endpoints', { bodyLimit: 4096 });
});
after(async () => {
  await fx.close();
});

function assertError(res: { status: number; json: unknown; text: string }, status: number, code?: string) {
  assert.equal(res.status, status, res.text);
  const body = res.json as { error?: { code?: unknown; message?: unknown } };
  assert.equal(typeof body?.error?.code, 'string', res.text);
  assert.equal(typeof body?.error?.message, 'string', res.text);
  if (code) assert.equal(body.error?.code, code, res.text);
  assert.doesNotMatch(res.text, /\.ts:\d+|node:internal|\n\s+at /, 'no stack trace');
}

describe('GET /stats', () => {
  test('answers the document shape after real processing', async () => {
    const key = fx.idempotency.generateIdempotencyKey('stats-q', 'acme', 'job-1');
    await fx.idempotency.processWithIdempotency(key, async () => ({ ok: true }));
    await fx.idempotency.processWithIdempotency(key, async () => ({ ok: true }));
    const res = await fx.request('GET', `${API}/stats?queue=stats-q&tenant=acme`);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(Object.keys(res.json).sort(), [
      'duplicates_avoided',
      'hit_rate',
      'last_updated',
      'queue_name',
      'tenant_id',
      'total_keys',
      'total_requests',
    ]);
    assert.equal(res.json.queue_name, 'stats-q');
    assert.equal(res.json.tenant_id, 'acme');
    assert.equal(res.json.total_keys, 1);
    assert.equal(res.json.total_requests, 2);
    assert.equal(res.json.duplicates_avoided, 1);
    assert.equal(res.json.hit_rate, 0.5);
    assert.match(res.json.last_updated, /^\d{4}-\d\d-\d\dT/);
  });

  test('400 names a missing queue and an unknown parameter', async () => {
    const missing = await fx.request('GET', `${API}/stats`);
    assertError(missing, 400, 'EO_INVALID_PARAMETER');
    assert.equal(missing.json.error.field, 'queue');
    const unknown = await fx.request('GET', `${API}/stats?queue=q&tenant_id=x`);
    assertError(unknown, 400);
    assert.equal(unknown.json.error.field, 'tenant_id');
  });
});

describe('/idempotency', () => {
  const body = {
    queue_name: 'orders',
    tenant_id: 'acme',
    key_id: 'order-123',
    value: { status: 'processed' },
    ttl: '24h',
  };

  test('POST creates (201), GET reads, POST again conflicts (409), DELETE removes (204), then 404', async () => {
    const created = await fx.request('POST', `${API}/idempotency`, { body });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.json.key_id, 'order-123');
    assert.deepEqual(created.json.value, { status: 'processed' });
    const ttl = Date.parse(created.json.expires_at) - Date.parse(created.json.created_at);
    assert.ok(Math.abs(ttl - DAY) < 5000, `ttl ${ttl}`);

    const read = await fx.request('GET', `${API}/idempotency?queue=orders&tenant=acme&key=order-123`);
    assert.equal(read.status, 200, read.text);
    assert.equal(read.json.status, 'completed');
    assert.deepEqual(read.json.value, { status: 'processed' });

    // The same id without the tenant is another key.
    assertError(await fx.request('GET', `${API}/idempotency?queue=orders&key=order-123`), 404);

    const again = await fx.request('POST', `${API}/idempotency`, { body: { ...body, value: 'overwritten?' } });
    assertError(again, 409, 'EO_IDEMPOTENCY_KEY_EXISTS');
    const still = await fx.request('GET', `${API}/idempotency?queue=orders&tenant=acme&key=order-123`);
    assert.deepEqual(still.json.value, { status: 'processed' });

    const deleted = await fx.request('DELETE', `${API}/idempotency?queue=orders&tenant=acme&key=order-123`);
    assert.equal(deleted.status, 204);
    assert.equal(deleted.text, '');
    assertError(await fx.request('GET', `${API}/idempotency?queue=orders&tenant=acme&key=order-123`), 404);
    assertError(
      await fx.request('DELETE', `${API}/idempotency?queue=orders&tenant=acme&key=order-123`),
      404,
      'EO_IDEMPOTENCY_KEY_NOT_FOUND',
    );
  });

  test('POST without ttl uses default_ttl; without value stores null', async () => {
    const res = await fx.request('POST', `${API}/idempotency`, { body: { queue_name: 'orders', key_id: 'no-ttl' } });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.json.value, null);
    const ttl = Date.parse(res.json.expires_at) - Date.parse(res.json.created_at);
    assert.ok(Math.abs(ttl - 3_600_000) < 5000, `ttl ${ttl}`);
  });

  test('400 for each bad field, naming it; nothing is written', async () => {
    const cases: [unknown, string][] = [
      [{ ...body, queue_name: undefined }, 'queue_name'],
      [{ ...body, key_id: undefined }, 'key_id'],
      [{ ...body, key_id: '' }, 'key_id'],
      [{ ...body, queue_name: 42 }, 'queue_name'],
      [{ ...body, tenant_id: ['a'] }, 'tenant_id'],
      [{ ...body, ttl: '5 parsecs' }, 'ttl'],
      [{ ...body, ttl: '0' }, 'ttl'],
      [{ ...body, ttl: 86400 }, 'ttl'],
      [{ ...body, ttl: '9999h' }, 'ttl'],
      [{ ...body, key_id: 'x'.repeat(600) }, 'key_id'],
      [{ ...body, extra: 1 }, 'extra'],
      [[body], 'body'],
      ['just a string', 'body'],
    ];
    for (const [payload, field] of cases) {
      const res = await fx.request('POST', `${API}/idempotency`, { body: payload });
      assertError(res, 400, 'EO_INVALID_PARAMETER');
      assert.equal(res.json.error.field, field, res.text);
    }
    const invalidJson = await fx.request('POST', `${API}/idempotency`, {
      raw: '{"queue_name": "orders", ',
      headers: { 'content-type': 'application/json' },
    });
    assertError(invalidJson, 400, 'EO_HTTP_INVALID_JSON');
    assertError(await fx.request('GET', `${API}/idempotency?queue=orders&key=order-123`), 404);
  });

  test('GET and DELETE: 400 for a missing or repeated queue/key', async () => {
    for (const method of ['GET', 'DELETE']) {
      const noKey = await fx.request(method, `${API}/idempotency?queue=orders`);
      assertError(noKey, 400);
      assert.equal(noKey.json.error.field, 'key');
      const noQueue = await fx.request(method, `${API}/idempotency?key=k`);
      assert.equal(noQueue.json.error.field, 'queue');
      const twice = await fx.request(method, `${API}/idempotency?queue=a&queue=b&key=k`);
      assertError(twice, 400);
      assert.match(twice.json.error.message, /once/);
    }
  });

  test('413 for a body over admin.body_limit, 415 for a type that is not JSON', async () => {
    const big = await fx.request('POST', `${API}/idempotency`, {
      body: { queue_name: 'orders', key_id: 'big', value: 'x'.repeat(5000) },
    });
    assertError(big, 413, 'EO_HTTP_BODY_TOO_LARGE');
    const xml = await fx.request('POST', `${API}/idempotency`, {
      raw: '<key/>',
      headers: { 'content-type': 'application/xml' },
    });
    assertError(xml, 415);
    assertError(await fx.request('GET', `${API}/idempotency?queue=orders&key=big`), 404);
  });
});

describe('/outbox', () => {
  test('GET lists by status with keyset pages and the backlog', async () => {
    await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
    const ids = await seedOutbox(fx.db.pool, [
      { status: 'failed' },
      { status: 'pending', ageMs: 60_000 },
      { status: 'failed' },
      { status: 'published' },
      { status: 'failed' },
    ]);
    const first = await fx.request('GET', `${API}/outbox?status=failed&limit=2`);
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(
      first.json.events.map((e: { id: string }) => e.id),
      [ids[0], ids[2]],
    );
    assert.equal(first.json.events[0].status, 'failed');
    assert.equal(first.json.events[0].last_error, 'boom');
    // A listing carries the payload's preview and size; GET /outbox/events/:id carries the payload itself.
    assert.deepEqual(JSON.parse(first.json.events[0].payload_preview), { n: 1 });
    assert.equal(first.json.events[0].payload_bytes, Buffer.byteLength('{"n": 1}'));
    assert.equal(first.json.events[0].payload_truncated, false);
    assert.equal(typeof first.json.next_cursor, 'string');
    assert.equal(first.json.backlog.pending, 1);
    assert.equal(first.json.backlog.failed, 3);
    assert.ok(first.json.backlog.oldest_pending_age_seconds >= 59, JSON.stringify(first.json.backlog));

    const second = await fx.request('GET', `${API}/outbox?status=failed&limit=2&cursor=${first.json.next_cursor}`);
    assert.deepEqual(
      second.json.events.map((e: { id: string }) => e.id),
      [ids[4]],
    );
    assert.equal(second.json.next_cursor, null);

    const all = await fx.request('GET', `${API}/outbox`);
    assert.equal(all.json.events.length, 5);
  });

  test('GET: 400 names status, limit, cursor', async () => {
    for (const [query, field] of [
      ['status=dead', 'status'],
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=ten', 'limit'],
      ['limit=1.5', 'limit'],
      ['cursor=not-a-cursor', 'cursor'],
      ['cursor=c2VxOjE=', 'cursor'], // padded: not the form this API issues
      ['cursor=c2VxOi0x', 'cursor'], // "seq:-1"
      ['page=2', 'page'],
    ] as const) {
      const res = await fx.request('GET', `${API}/outbox?${query}`);
      assertError(res, 400);
      assert.equal(res.json.error.field, field, res.text);
    }
  });

  test('POST /outbox/retry replays failed events by id (and NOTIFYs relays); others are left alone', async () => {
    await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
    const [failedA, pending, failedB, failedC] = await seedOutbox(fx.db.pool, [
      { status: 'failed' },
      { status: 'pending' },
      { status: 'failed' },
      { status: 'failed' },
    ]);
    const listener = new pg.Client({ connectionString: fx.db.url });
    await listener.connect();
    let notified = 0;
    listener.on('notification', () => {
      notified += 1;
    });
    await listener.query('LISTEN exactly_once_outbox');
    try {
      const res = await fx.request('POST', `${API}/outbox/retry`, { body: { ids: [failedA, pending] } });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.retried, 1);
      assert.deepEqual(res.json.ids, [failedA]);
      assert.deepEqual(res.json.not_retried, [pending]);
      await waitFor(() => notified > 0, 5000, 'NOTIFY exactly_once_outbox');
      const { rows } = await fx.db.pool.query(
        'SELECT status, retry_count, next_attempt_at <= now() AS due FROM exactly_once_outbox WHERE id = $1',
        [failedA],
      );
      assert.deepEqual(rows[0], { status: 'pending', retry_count: 0, due: true });

      const all = await fx.request('POST', `${API}/outbox/retry`, { body: { all_failed: true } });
      assert.equal(all.status, 200, all.text);
      assert.equal(all.json.retried, 2);
      assert.deepEqual(await outboxCounts(fx.db.pool), { pending: 4, published: 0, failed: 0 });
      // The two replayed by all_failed are exactly the two still failed: B and C, reset and due now.
      const { rows: replayed } = await fx.db.pool.query(
        `SELECT id, status, retry_count, next_attempt_at <= now() AS due FROM exactly_once_outbox
          WHERE id = ANY($1::uuid[]) ORDER BY seq`,
        [[failedB, failedC]],
      );
      assert.deepEqual(replayed, [
        { id: failedB, status: 'pending', retry_count: 0, due: true },
        { id: failedC, status: 'pending', retry_count: 0, due: true },
      ]);
    } finally {
      await listener.end();
    }
  });

  test('POST /outbox/retry: 400 names the bad field', async () => {
    for (const [body, field] of [
      [{}, 'ids'],
      [{ ids: [] }, 'ids'],
      [{ ids: 'abc' }, 'ids'],
      [{ ids: ['not-a-uuid'] }, 'ids[0]'],
      [{ ids: ['0190a6e0-0000-7000-8000-000000000000'], all_failed: true }, 'ids'],
      [{ all_failed: false }, 'all_failed'],
      [{ all_failed: 'yes' }, 'all_failed'],
      [{ id: 'x' }, 'id'],
    ] as const) {
      const res = await fx.request('POST', `${API}/outbox/retry`, { body });
      assertError(res, 400);
      assert.equal(res.json.error.field, field, res.text);
    }
  });

  test('POST /outbox publishes due events now and says what happened', async () => {
    await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
    for (const n of [1, 2, 3])
      await storeInOutboxStandalone(fx.db.pool, { aggregateId: `a${n}`, eventType: 'e', payload: { n } });
    const res = await fx.request('POST', `${API}/outbox`);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.published, 3);
    assert.equal(res.json.failed, 0);
    assert.equal(await fx.redis.llen(`${fx.prefix}jobqueue:low_priority`), 3);
    assertError(await fx.request('POST', `${API}/outbox`, { body: { now: true } }), 400);
    assertError(await fx.request('POST', `${API}/outbox?force=1`), 400);
  });
});

describe('POST /cleanup', () => {
  test('type=outbox drops old published history and old failed events only; type=idempotency removes expired keys', async () => {
    await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
    // History in a partition that closed 8 days ago (cleanup_after: 7 days), the rest after it.
    await seedOutbox(fx.db.pool, [
      { status: 'published', ageMs: 8 * DAY },
      { status: 'failed', ageMs: 8 * DAY },
    ]);
    await closeCurrentPartition(fx.db.pool, 9 * DAY, 8 * DAY);
    await seedOutbox(fx.db.pool, [
      { status: 'pending', ageMs: 8 * DAY },
      { status: 'published', ageMs: 0 },
    ]);
    const outbox = await fx.request('POST', `${API}/cleanup?type=outbox`);
    assert.equal(outbox.status, 200, outbox.text);
    assert.equal(outbox.json.type, 'outbox');
    assert.equal(outbox.json.outbox.deleted, 2);
    assert.equal(outbox.json.idempotency, undefined);
    assert.deepEqual(await outboxCounts(fx.db.pool), { pending: 1, published: 1, failed: 0 });

    const short = await fx.request('POST', `${API}/idempotency`, {
      body: { queue_name: 'cleanup-q', key_id: 'short', ttl: '1ms' },
    });
    assert.equal(short.status, 201, short.text);
    await new Promise((r) => setTimeout(r, 20));
    const idem = await fx.request('POST', `${API}/cleanup?type=idempotency`);
    assert.equal(idem.status, 200, idem.text);
    assert.ok(idem.json.idempotency.deleted >= 1, idem.text);

    const all = await fx.request('POST', `${API}/cleanup`);
    assert.equal(all.status, 200, all.text);
    assert.equal(all.json.type, 'all');
    assert.ok(all.json.outbox && all.json.idempotency, all.text);
  });

  test('400 names an unknown type', async () => {
    const res = await fx.request('POST', `${API}/cleanup?type=everything`);
    assertError(res, 400);
    assert.equal(res.json.error.field, 'type');
  });
});

describe('health, probes, metrics', () => {
  test('GET /health has the document shape; /healthz and /readyz answer 200', async () => {
    const health = await fx.request('GET', `${API}/health`);
    assert.equal(health.status, 200, health.text);
    assert.equal(health.json.status, 'healthy');
    assert.deepEqual(health.json.features, { idempotency: true, outbox: true, metrics: true });
    assert.ok(!Number.isNaN(Date.parse(health.json.timestamp)));
    assert.equal((await fx.request('GET', '/healthz')).json.status, 'ok');
    const ready = await fx.request('GET', '/readyz');
    assert.equal(ready.status, 200);
    assert.equal(ready.json.checks.postgres.ok, true);
    assert.equal(ready.json.checks.redis.ok, true);
  });

  test('/metrics serves the Prometheus text format', async () => {
    const res = await fx.request('GET', '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(res.text, /# TYPE exactly_once_outbox_published_total counter/);
  });
});

describe('protocol errors', () => {
  test('405 with Allow for a wrong method on a known path', async () => {
    for (const [method, path, allow] of [
      ['PUT', `${API}/idempotency`, 'GET, HEAD, POST, DELETE'],
      ['PATCH', `${API}/idempotency`, 'GET, HEAD, POST, DELETE'],
      ['GET', `${API}/outbox/retry`, 'POST'],
      ['GET', `${API}/cleanup`, 'POST'],
      ['DELETE', `${API}/stats`, 'GET, HEAD'],
      ['POST', `${API}/health`, 'GET, HEAD'],
      ['DELETE', `${API}/outbox`, 'GET, HEAD, POST'],
      ['POST', '/metrics', 'GET, HEAD'],
    ] as const) {
      const res = await fx.request(method, path);
      assertError(res, 405, 'EO_HTTP_METHOD_NOT_ALLOWED');
      assert.equal(res.headers.get('allow'), allow, `${method} ${path}`);
    }
  });

  test('404 JSON for an unknown path', async () => {
    assertError(await fx.request('GET', `${API}/nope`), 404, 'EO_HTTP_NOT_FOUND');
    assertError(await fx.request('GET', '/nope'), 404, 'EO_HTTP_NOT_FOUND');
    assertError(await fx.request('GET', '/ui/../package.json'), 404);
  });
});

describe('features disabled', () => {
  test('503 from the endpoints of a disabled feature; /health reports the flags', async () => {
    const off = await adminFixture('admin_disabled', {
      db: fx.db,
      config: { idempotency: { enabled: false }, outbox: { enabled: false }, metrics: { enabled: false } },
    });
    try {
      for (const [method, path, body] of [
        ['GET', `${API}/stats?queue=q`],
        ['GET', `${API}/idempotency?queue=q&key=k`],
        ['POST', `${API}/idempotency`, { queue_name: 'q', key_id: 'k' }],
        ['DELETE', `${API}/idempotency?queue=q&key=k`],
        ['POST', `${API}/outbox`],
        ['GET', `${API}/outbox`],
        ['POST', `${API}/outbox/retry`, { all_failed: true }],
        ['POST', `${API}/cleanup?type=outbox`],
        ['POST', `${API}/cleanup?type=idempotency`],
        ['GET', '/metrics'],
      ] as const) {
        const res = await off.request(method, path, body ? { body } : {});
        assertError(res, 503, 'EO_FEATURE_DISABLED');
      }
      const health = await off.request('GET', `${API}/health`);
      assert.deepEqual(health.json.features, { idempotency: false, outbox: false, metrics: false });
    } finally {
      await off.close();
    }
  });

  test('/readyz and /health answer 503 when Redis is unreachable', async () => {
    const deadPort = await freePort();
    const down = await adminFixture('admin_down', { db: fx.db, redisUrl: `redis://127.0.0.1:${deadPort}` });
    try {
      const ready = await down.request('GET', '/readyz');
      assertError(ready, 503, 'EO_HTTP_NOT_READY');
      assert.equal(ready.json.checks.postgres.ok, true);
      assert.equal(ready.json.checks.redis.ok, false);
      const health = await down.request('GET', `${API}/health`);
      assert.equal(health.status, 503);
      assert.equal(health.json.status, 'unhealthy');
      assert.equal((await down.request('GET', '/healthz')).status, 200);
    } finally {
      await down.close();
    }
  });
});

describe('an unmigrated database', () => {
  test('every endpoint that touches a table answers 503 EO_NOT_MIGRATED, naming the command to run', async () => {
    const bare = await adminFixture('admin_unmigrated', { migrate: false });
    try {
      const requests: [string, string, unknown?][] = [
        ['GET', `${API}/outbox`],
        ['GET', `${API}/outbox?status=failed&limit=5`],
        ['POST', `${API}/outbox/retry`, { all_failed: true }],
        ['POST', `${API}/outbox/retry`, { ids: ['0190a6e0-0000-7000-8000-000000000000'] }],
        ['POST', `${API}/outbox`],
        ['GET', `${API}/stats?queue=q`],
        ['GET', `${API}/idempotency?queue=q&key=k`],
        ['POST', `${API}/idempotency`, { queue_name: 'q', key_id: 'k' }],
        ['DELETE', `${API}/idempotency?queue=q&key=k`],
        ['POST', `${API}/cleanup`],
        ['POST', `${API}/cleanup?type=outbox`],
        ['POST', `${API}/cleanup?type=idempotency`],
      ];
      for (const [method, path, body] of requests) {
        const res = await bare.request(method, path, body === undefined ? {} : { body });
        assertError(res, 503, 'EO_NOT_MIGRATED');
        assert.match(res.json.error.message, /exactly-once migrate/, `${method} ${path}`);
      }
      // Bad input is still the caller's problem first, migrated or not.
      assertError(await bare.request('GET', `${API}/outbox?limit=0`), 400, 'EO_INVALID_PARAMETER');
    } finally {
      await bare.close();
    }
  });

  test("a missing table anywhere in an error's cause chain maps to 503 EO_NOT_MIGRATED (SQLSTATE, not text)", () => {
    const wrapped = new Error('could not list', { cause: Object.assign(new Error('anything'), { code: '42P01' }) });
    assert.deepEqual(toHttpError(wrapped).status, 503);
    assert.equal(toHttpError(wrapped).body.error.code, 'EO_NOT_MIGRATED');
    // The same words without the SQLSTATE are an internal error, not a migration hint.
    const textOnly = new Error('relation "exactly_once_outbox" does not exist');
    assert.equal(toHttpError(textOnly).status, 500);
  });
});

test('mounts into a user fastify app without taking over its 404s or its other routes', async () => {
  const app = Fastify();
  app.get('/', async () => ({ hello: 'world' }));
  await app.register(exactlyOnceAdmin, { manager: fx.backend, probes: false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const { port } = app.server.address() as { port: number };
    const base = `http://127.0.0.1:${port}`;
    assert.deepEqual(await (await fetch(`${base}/`)).json(), { hello: 'world' });
    const health = await fetch(`${base}${API}/health`);
    assert.equal(health.status, 200);
    const bad = await fetch(`${base}${API}/stats`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { field: string } }).error.field, 'queue');
    // probes: false leaves /metrics to the app; the app's own 404 format is untouched.
    const metrics = await fetch(`${base}/metrics`);
    assert.equal(metrics.status, 404);
    assert.equal(((await metrics.json()) as { statusCode: number }).statusCode, 404);
  } finally {
    await app.close();
  }
});
