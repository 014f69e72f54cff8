import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bearerCheck } from '../src/admin/auth.js';
import { startAdminServer } from '../src/admin/server.js';
import { AdminUnauthorizedError, ConfigError } from '../src/errors.js';
import { type AdminFixture, adminFixture } from './helpers/admin-fixture.js';
import { outboxCounts, seedOutbox } from './helpers/outbox-rows.js';

const API = '/api/v1/exactly-once';
const TOKEN = 's3cret-token-of-some-length';
let fx: AdminFixture;

before(async () => {
  fx = await adminFixture('admin_auth', { token: TOKEN });
});
after(async () => {
  await fx.close();
});

/** Every mutating endpoint, with a request that would succeed (2xx) given the right token. */
const MUTATIONS: { name: string; method: string; path: string; body?: unknown; ok: number }[] = [
  {
    name: 'POST /idempotency',
    method: 'POST',
    path: `${API}/idempotency`,
    body: { queue_name: 'auth-q', key_id: 'k1', value: 1 },
    ok: 201,
  },
  { name: 'DELETE /idempotency', method: 'DELETE', path: `${API}/idempotency?queue=auth-q&key=k1`, ok: 204 },
  { name: 'POST /outbox', method: 'POST', path: `${API}/outbox`, ok: 200 },
  { name: 'POST /outbox/retry', method: 'POST', path: `${API}/outbox/retry`, body: { all_failed: true }, ok: 200 },
  { name: 'POST /cleanup', method: 'POST', path: `${API}/cleanup?type=outbox`, ok: 200 },
];

describe('mutating endpoints with ADMIN_TOKEN set', () => {
  for (const m of MUTATIONS) {
    test(`${m.name}: 401 without a token, with a wrong one, with another scheme; ${m.ok} with the right one`, async () => {
      await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
      await seedOutbox(fx.db.pool, [{ status: 'failed' }]);
      const opts = m.body === undefined ? {} : { body: m.body };
      const refusals = [
        await fx.request(m.method, m.path, opts),
        await fx.request(m.method, m.path, { ...opts, token: 'wrong' }),
        await fx.request(m.method, m.path, { ...opts, token: `${TOKEN}x` }),
        await fx.request(m.method, m.path, { ...opts, token: TOKEN.slice(0, -1) }),
        await fx.request(m.method, m.path, { ...opts, headers: { authorization: `Basic ${TOKEN}` } }),
        await fx.request(m.method, m.path, { ...opts, headers: { authorization: TOKEN } }),
      ];
      for (const res of refusals) {
        assert.equal(res.status, 401, res.text);
        assert.equal(res.json.error.code, 'EO_ADMIN_UNAUTHORIZED');
        assert.equal(res.headers.get('www-authenticate'), 'Bearer');
      }
      // Refused requests changed nothing.
      assert.deepEqual(await outboxCounts(fx.db.pool), { pending: 0, published: 0, failed: 1 });

      const ok = await fx.request(m.method, m.path, { ...opts, token: TOKEN });
      assert.equal(ok.status, m.ok, ok.text);
    });
  }

  test('a refused POST /idempotency wrote no key', async () => {
    const res = await fx.request('POST', `${API}/idempotency`, { body: { queue_name: 'auth-q', key_id: 'never' } });
    assert.equal(res.status, 401);
    assert.equal((await fx.request('GET', `${API}/idempotency?queue=auth-q&key=never`)).status, 404);
  });

  test('the scheme is case-insensitive', async () => {
    const res = await fx.request('POST', `${API}/cleanup?type=outbox`, {
      headers: { authorization: `bearer ${TOKEN}` },
    });
    assert.equal(res.status, 200, res.text);
  });

  test('auth is checked before the body is parsed: an unauthenticated oversized or broken body gets 401', async () => {
    const res = await fx.request('POST', `${API}/idempotency`, {
      raw: '{"broken',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.status, 401);
  });

  test('reads stay open without protect_reads', async () => {
    assert.equal((await fx.request('GET', `${API}/stats?queue=auth-q`)).status, 200);
    assert.equal((await fx.request('GET', `${API}/outbox`)).status, 200);
    assert.equal((await fx.request('GET', '/metrics')).status, 200);
  });
});

test('protect_reads: reads need the token too; /healthz and /readyz never do', async () => {
  const closed = await adminFixture('admin_auth_reads', { db: fx.db, token: TOKEN, protectReads: true });
  try {
    for (const path of [
      `${API}/stats?queue=q`,
      `${API}/idempotency?queue=q&key=k`,
      `${API}/outbox`,
      `${API}/health`,
      '/metrics',
    ]) {
      const refused = await closed.request('GET', path);
      assert.equal(refused.status, 401, `${path}: ${refused.text}`);
      const allowed = await closed.request('GET', path, { token: TOKEN });
      assert.notEqual(allowed.status, 401, path);
      assert.ok(allowed.status < 500, `${path}: ${allowed.text}`);
    }
    assert.equal((await closed.request('GET', '/healthz')).status, 200);
    assert.equal((await closed.request('GET', '/readyz')).status, 200);
  } finally {
    await closed.close();
  }
});

test('without a token configured, mutating endpoints are open (the admin port binds to loopback by default)', async () => {
  const open = await adminFixture('admin_auth_open', { db: fx.db });
  try {
    assert.equal(open.config.admin.host, '127.0.0.1');
    assert.equal((await open.request('POST', `${API}/cleanup?type=outbox`)).status, 200);
  } finally {
    await open.close();
  }
});

test('bearerCheck compares digests: equal-length and different-length wrong tokens are both refused', () => {
  const check = bearerCheck('abc');
  assert.doesNotThrow(() => check('Bearer abc'));
  for (const header of ['Bearer abd', 'Bearer ab', 'Bearer abcd', 'Bearer ', 'Bearer', '', undefined, ['Bearer abc']]) {
    assert.throws(() => check(header), AdminUnauthorizedError, String(header));
  }
  assert.doesNotThrow(() => bearerCheck(undefined)(undefined));
});

test('an empty token, or one that cannot travel in a Bearer header, stops the admin API from starting', async () => {
  for (const token of ['', 'two words', 'tab\tx', 'caf\u00e9', 'x"y']) {
    assert.throws(
      () => bearerCheck(token),
      (err: unknown) => err instanceof ConfigError && err.path === 'admin.token' && /ADMIN_TOKEN/.test(err.message),
      JSON.stringify(token),
    );
    await assert.rejects(
      startAdminServer({ manager: fx.backend, token, host: '127.0.0.1', port: 0 }),
      (err: unknown) => err instanceof ConfigError && err.code === 'EO_CONFIG_INVALID' && err.path === 'admin.token',
      JSON.stringify(token),
    );
  }
});
