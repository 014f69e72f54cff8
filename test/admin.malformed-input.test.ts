import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type AdminFixture, adminFixture, type RequestOptions } from './helpers/admin-fixture.js';
import { outboxCounts, seedOutbox } from './helpers/outbox-rows.js';

const API = '/api/v1/exactly-once';
const TOKEN = 'fuzz-token';
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
let fx: AdminFixture;

before(async () => {
  fx = await adminFixture('admin_fuzz', { token: TOKEN, bodyLimit: 2048 });
});
after(async () => {
  await fx.close();
});

/** mulberry32: small, seedable, good enough to pick cases. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T,
    bool: () => next() < 0.5,
  };
}

type Case = { method: string; path: string; options: RequestOptions; why: string };

const WEIRD_STRINGS = [
  '',
  ' ',
  '%00',
  '%',
  '%zz',
  '%E0%A4%A',
  '\u0000',
  '💥',
  'a'.repeat(600),
  '../../etc/passwd',
  "'; DROP TABLE exactly_once_outbox; --",
  '{"a":1}',
  '-1',
  '1e309',
  'NaN',
  '0x10',
  'null',
  'true',
  '[]',
];
const WEIRD_VALUES: unknown[] = [
  null,
  true,
  0,
  -1,
  1.5,
  1e308,
  '',
  'x'.repeat(600),
  '\u0000',
  [],
  ['a', 'b'],
  {},
  { nested: { deep: [1] } },
];
const BAD_JSON = [
  '{',
  '{"queue_name":',
  '{"a":1,}',
  "{'a':1}",
  '[1,2',
  'undefined',
  '{"a":1}{"b":2}',
  '\u0000',
  '{"a": NaN}',
  '"unterminated',
];

function generate(rand: ReturnType<typeof prng>): Case {
  const enc = (s: string) => (rand.bool() ? encodeURIComponent(s) : s.replace(/[#&?\s]/g, ''));
  const weird = () => enc(rand.pick(WEIRD_STRINGS));
  const auth = { token: TOKEN };
  switch (rand.int(14)) {
    case 0: {
      // stats: queue missing, empty, repeated, too long, or an unknown parameter
      const q = rand.pick([
        '',
        'queue=',
        `tenant=${weird()}`,
        'queue=a&queue=b',
        `queue=${'q'.repeat(600)}`,
        `queue=a&${weird()}x=1`,
      ]);
      return { method: 'GET', path: `${API}/stats?${q}`, options: {}, why: 'bad stats query' };
    }
    case 1:
    case 2: {
      const method = rand.pick(['GET', 'DELETE']);
      const q = rand.pick([
        `queue=${weird()}`,
        `key=${weird()}`,
        `queue=a&key=b&key=c`,
        `queue=a&key=${'k'.repeat(513)}`,
        `queue=a&key=b&tenant=${'t'.repeat(513)}`,
        `queue=a&key=b&ttl=${weird()}`,
        `queue=a&key=%00`,
        `queue=&key=b`,
      ]);
      return { method, path: `${API}/idempotency?${q}`, options: auth, why: 'bad key query' };
    }
    case 3:
    case 4:
    case 5: {
      const base: Record<string, unknown> = { queue_name: 'fuzz', key_id: `k${rand.int(1000)}`, value: { n: 1 } };
      const field = rand.pick(['queue_name', 'key_id', 'tenant_id', 'ttl', 'extra', '__proto__', 'constructor']);
      const mutation = rand.int(4);
      let body: unknown = { ...base };
      if (mutation === 0) delete (body as Record<string, unknown>)[rand.pick(['queue_name', 'key_id'])];
      else if (mutation === 1 && field !== 'extra' && !field.startsWith('_') && field !== 'constructor') {
        const value = rand.pick(WEIRD_VALUES.filter((v) => typeof v !== 'string' || field === 'ttl'));
        (body as Record<string, unknown>)[field] =
          field === 'ttl' ? rand.pick(['5 parsecs', '-1h', '0', 42, '']) : value;
        if (field === 'tenant_id' && typeof value === 'string') (body as Record<string, unknown>)[field] = 7;
      } else if (mutation === 2) body = JSON.parse(`{"queue_name":"fuzz","key_id":"x","${field}x":1}`);
      else body = rand.pick([[base], 'string', 42, null, true]);
      return { method: 'POST', path: `${API}/idempotency`, options: { ...auth, body }, why: 'bad create body' };
    }
    case 6: {
      const raw = rand.pick(BAD_JSON);
      const path = rand.pick([`${API}/idempotency`, `${API}/outbox/retry`, `${API}/outbox`, `${API}/cleanup`]);
      return {
        method: 'POST',
        path,
        options: { ...auth, raw, headers: { 'content-type': 'application/json' } },
        why: 'invalid JSON',
      };
    }
    case 7: {
      const type = rand.pick(['text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'text/html']);
      return {
        method: 'POST',
        path: rand.pick([`${API}/idempotency`, `${API}/outbox/retry`]),
        options: { ...auth, raw: 'queue_name=a&key_id=b', headers: { 'content-type': type } },
        why: `content-type ${type}`,
      };
    }
    case 8: {
      const big = JSON.stringify({ queue_name: 'fuzz', key_id: 'big', value: 'v'.repeat(2100 + rand.int(5000)) });
      return {
        method: 'POST',
        path: `${API}/idempotency`,
        options: { ...auth, raw: big, headers: { 'content-type': 'application/json' } },
        why: 'oversized body',
      };
    }
    case 9: {
      const q = rand.pick([
        `status=${weird()}`,
        `limit=${rand.pick(['0', '-5', '1001', 'abc', '1.5', '1e3', '', '99999999999'])}`,
        `cursor=${weird()}`,
        'status=failed&status=pending',
        `x=${weird()}`,
      ]);
      return { method: 'GET', path: `${API}/outbox?${q}`, options: {}, why: 'bad outbox query' };
    }
    case 10: {
      const body = rand.pick<unknown>([
        {},
        { ids: [] },
        { ids: rand.pick(WEIRD_VALUES) },
        { ids: [rand.pick(WEIRD_STRINGS)] },
        { ids: Array.from({ length: 1001 }, () => '0190a6e0-0000-7000-8000-000000000000') },
        { all_failed: rand.pick([false, 'true', 1, null]) },
        { ids: ['0190a6e0-0000-7000-8000-000000000000'], all_failed: true },
        [{ all_failed: true }],
      ]);
      return { method: 'POST', path: `${API}/outbox/retry`, options: { ...auth, body }, why: 'bad retry body' };
    }
    case 11: {
      const path = rand.pick([
        `${API}/cleanup?type=${weird()}x`,
        `${API}/cleanup?type=all&type=outbox`,
        `${API}/outbox?now=1`,
      ]);
      const withBody = rand.bool();
      return {
        method: 'POST',
        path,
        options: withBody ? { ...auth, body: { type: 'all' } } : auth,
        why: 'bad cleanup/publish request',
      };
    }
    case 12: {
      const [path, allowed] = rand.pick([
        [`${API}/stats`, ['GET', 'HEAD']],
        [`${API}/idempotency`, ['GET', 'HEAD', 'POST', 'DELETE']],
        [`${API}/outbox`, ['GET', 'HEAD', 'POST']],
        [`${API}/outbox/retry`, ['POST']],
        [`${API}/cleanup`, ['POST']],
        [`${API}/health`, ['GET', 'HEAD']],
        ['/metrics', ['GET', 'HEAD']],
      ] as const);
      const method = rand.pick(
        ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'].filter((m) => !(allowed as readonly string[]).includes(m)),
      );
      return { method, path, options: auth, why: 'wrong method' };
    }
    default: {
      const path = rand.pick([
        `${API}/${weird()}x`,
        `${API}/idempotency/extra`,
        `/api/v2/exactly-once/stats`,
        `${API}//stats`,
        `/${weird()}x`,
        `${API}/outbox/retry/1`,
      ]);
      return { method: rand.pick(['GET', 'POST']), path, options: auth, why: 'unknown path' };
    }
  }
}

async function snapshot() {
  const { rows } = await fx.db.pool.query<{ n: number }>('SELECT (SELECT count(*) FROM idempotency_keys)::int AS n');
  let redisKeys = 0;
  let cursor = '0';
  do {
    const [next, keys] = await fx.redis.scan(cursor, 'MATCH', `*${fx.prefix}*`, 'COUNT', 1000);
    cursor = next;
    redisKeys += keys.length;
  } while (cursor !== '0');
  return { outbox: await outboxCounts(fx.db.pool), keys: rows[0]?.n, redisKeys };
}

test(`200 random malformed requests each get a 4xx JSON error and change nothing (seed ${SEED})`, async (t) => {
  await seedOutbox(fx.db.pool, [{ status: 'failed' }, { status: 'pending' }, { status: 'published' }]);
  const created = await fx.request('POST', `${API}/idempotency`, {
    token: TOKEN,
    body: { queue_name: 'fuzz', key_id: 'existing', value: 1 },
  });
  assert.equal(created.status, 201);
  const before = await snapshot();
  const rand = prng(SEED);
  const statuses = new Map<number, number>();
  let skipped = 0;
  for (let i = 0; i < 200; i++) {
    const c = generate(rand);
    let res: Awaited<ReturnType<AdminFixture['request']>>;
    try {
      res = await fx.request(c.method, c.path, c.options);
    } catch (err) {
      // fetch itself refuses a few URLs (it never reaches the server); that is not the server's answer.
      if (err instanceof TypeError) {
        skipped += 1;
        continue;
      }
      throw err;
    }
    const where = `#${i} (seed ${SEED}) ${c.why}: ${c.method} ${c.path.slice(0, 120)} -> ${res.status} ${res.text.slice(0, 300)}`;
    assert.ok(res.status >= 400 && res.status < 500, where);
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    if (c.method !== 'HEAD') {
      assert.equal(typeof res.json?.error?.code, 'string', where);
      assert.equal(typeof res.json?.error?.message, 'string', where);
    }
    assert.doesNotMatch(res.text, /\.ts:\d+|node:internal|\n\s+at /, where);
  }
  assert.ok(skipped < 20, `${skipped} requests never reached the server`);
  t.diagnostic(JSON.stringify({ seed: SEED, skipped, statuses: Object.fromEntries(statuses) }));
  assert.deepEqual(await snapshot(), before, 'nothing was written');
  // The server is still fine.
  assert.equal((await fx.request('GET', '/readyz')).status, 200);
  // The mix covered the interesting statuses.
  for (const status of [400, 404, 405, 413]) assert.ok(statuses.has(status), `no ${status} in ${[...statuses]}`);
});
