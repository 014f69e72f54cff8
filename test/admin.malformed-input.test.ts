import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type AdminFixture, adminFixture, type RequestOptions } from './helpers/admin-fixture.js';
import { outboxCounts, seedOutbox } from './helpers/outbox-rows.js';

/**
 * A fixed corpus of malformed requests, each with the exact answer it must get: status, `error.code` and
 * `error.field` (absent where the error is about the request as a whole). Deterministic, so a failure names the case
 * and reproduces every run. Nothing in the corpus may change the database or Redis.
 */
const API = '/api/v1/exactly-once';
const TOKEN = 'fuzz-token';
const UUID = '0190a6e0-0000-7000-8000-000000000000';
const auth = { token: TOKEN };
let fx: AdminFixture;

before(async () => {
  fx = await adminFixture('admin_fuzz', { token: TOKEN, bodyLimit: 2048 });
});
after(async () => {
  await fx.close();
});

interface Expected {
  status: number;
  code: string;
  /** `error.field`; `undefined` asserts that the body has none. */
  field?: string;
}
interface Case {
  name: string;
  method: string;
  path: string;
  options?: RequestOptions;
  expect: Expected;
}

const bad = (field: string): Expected => ({ status: 400, code: 'EO_INVALID_PARAMETER', field });
const invalidJson: Expected = { status: 400, code: 'EO_HTTP_INVALID_JSON', field: 'body' };
const unauthorized: Expected = { status: 401, code: 'EO_ADMIN_UNAUTHORIZED' };
const notFound: Expected = { status: 404, code: 'EO_HTTP_NOT_FOUND' };
const methodNotAllowed: Expected = { status: 405, code: 'EO_HTTP_METHOD_NOT_ALLOWED' };
const tooLarge: Expected = { status: 413, code: 'EO_HTTP_BODY_TOO_LARGE' };
const unsupported: Expected = { status: 415, code: 'EO_HTTP_UNSUPPORTED_MEDIA_TYPE' };

const get = (name: string, path: string, expect: Expected): Case => ({ name, method: 'GET', path, expect });
const post = (name: string, path: string, body: unknown, expect: Expected, token = true): Case => ({
  name,
  method: 'POST',
  path,
  options: { ...(token ? auth : {}), ...(body === undefined ? {} : { body }) },
  expect,
});
const raw = (name: string, path: string, text: string, type: string, expect: Expected, token = true): Case => ({
  name,
  method: 'POST',
  path,
  options: { ...(token ? auth : {}), raw: text, headers: { 'content-type': type } },
  expect,
});

const key = { queue_name: 'fuzz', key_id: 'k1', value: { n: 1 } };

const CORPUS: Case[] = [
  // GET /stats
  get('stats: no queue', `${API}/stats`, bad('queue')),
  get('stats: tenant without queue', `${API}/stats?tenant=t`, bad('queue')),
  get('stats: empty queue', `${API}/stats?queue=`, bad('queue')),
  get('stats: queue twice', `${API}/stats?queue=a&queue=b`, bad('queue')),
  get('stats: queue too long', `${API}/stats?queue=${'q'.repeat(600)}`, bad('queue')),
  get('stats: NUL in queue', `${API}/stats?queue=%00`, bad('queue')),
  get('stats: tenant too long', `${API}/stats?queue=a&tenant=${'t'.repeat(513)}`, bad('tenant')),
  get('stats: unknown tenant_id', `${API}/stats?queue=a&tenant_id=x`, bad('tenant_id')),

  // GET / DELETE /idempotency
  get('get key: no key', `${API}/idempotency?queue=a`, bad('key')),
  get('get key: no queue', `${API}/idempotency?key=k`, bad('queue')),
  get('get key: empty queue', `${API}/idempotency?queue=&key=b`, bad('queue')),
  get('get key: key twice', `${API}/idempotency?queue=a&key=b&key=c`, bad('key')),
  get('get key: key too long', `${API}/idempotency?queue=a&key=${'k'.repeat(513)}`, bad('key')),
  get('get key: tenant too long', `${API}/idempotency?queue=a&key=b&tenant=${'t'.repeat(513)}`, bad('tenant')),
  get('get key: NUL in key', `${API}/idempotency?queue=a&key=%00`, bad('key')),
  get('get key: unknown ttl', `${API}/idempotency?queue=a&key=b&ttl=1h`, bad('ttl')),
  get('get key: absent', `${API}/idempotency?queue=fuzz&key=missing`, {
    status: 404,
    code: 'EO_IDEMPOTENCY_KEY_NOT_FOUND',
  }),
  {
    name: 'delete key: no key',
    method: 'DELETE',
    path: `${API}/idempotency?queue=a`,
    options: auth,
    expect: bad('key'),
  },
  {
    name: 'delete key: absent',
    method: 'DELETE',
    path: `${API}/idempotency?queue=fuzz&key=missing`,
    options: auth,
    expect: { status: 404, code: 'EO_IDEMPOTENCY_KEY_NOT_FOUND' },
  },
  {
    name: 'delete key: no token',
    method: 'DELETE',
    path: `${API}/idempotency?queue=fuzz&key=existing`,
    expect: unauthorized,
  },

  // POST /idempotency: each field wrong in each way
  post('create: no queue_name', `${API}/idempotency`, { key_id: 'k' }, bad('queue_name')),
  post('create: no key_id', `${API}/idempotency`, { queue_name: 'q' }, bad('key_id')),
  post('create: empty key_id', `${API}/idempotency`, { ...key, key_id: '' }, bad('key_id')),
  post('create: key_id too long', `${API}/idempotency`, { ...key, key_id: 'x'.repeat(600) }, bad('key_id')),
  post('create: queue_name a number', `${API}/idempotency`, { ...key, queue_name: 42 }, bad('queue_name')),
  post('create: queue_name null', `${API}/idempotency`, { ...key, queue_name: null }, bad('queue_name')),
  post('create: queue_name an object', `${API}/idempotency`, { ...key, queue_name: {} }, bad('queue_name')),
  post('create: NUL in queue_name', `${API}/idempotency`, { ...key, queue_name: 'a\u0000b' }, bad('queue_name')),
  post('create: tenant_id an array', `${API}/idempotency`, { ...key, tenant_id: ['a'] }, bad('tenant_id')),
  post('create: tenant_id a number', `${API}/idempotency`, { ...key, tenant_id: 7 }, bad('tenant_id')),
  post('create: ttl without unit', `${API}/idempotency`, { ...key, ttl: 42 }, bad('ttl')),
  post('create: ttl unknown unit', `${API}/idempotency`, { ...key, ttl: '5 parsecs' }, bad('ttl')),
  post('create: ttl negative', `${API}/idempotency`, { ...key, ttl: '-1h' }, bad('ttl')),
  post('create: ttl zero', `${API}/idempotency`, { ...key, ttl: '0' }, bad('ttl')),
  post('create: ttl empty', `${API}/idempotency`, { ...key, ttl: '' }, bad('ttl')),
  post('create: ttl beyond a year', `${API}/idempotency`, { ...key, ttl: '9999h' }, bad('ttl')),
  post('create: unknown field', `${API}/idempotency`, { ...key, extra: 1 }, bad('extra')),
  raw(
    'create: __proto__ field',
    `${API}/idempotency`,
    '{"queue_name":"fuzz","key_id":"x","__proto__":{"admin":true}}',
    'application/json',
    bad('__proto__'),
  ),
  post('create: constructor field', `${API}/idempotency`, { ...key, constructor: 1 }, bad('constructor')),
  post('create: body an array', `${API}/idempotency`, [key], bad('body')),
  post('create: body a string', `${API}/idempotency`, 'string', bad('body')),
  post('create: body a number', `${API}/idempotency`, 42, bad('body')),
  post('create: body null', `${API}/idempotency`, null, bad('body')),
  post('create: no body', `${API}/idempotency`, undefined, bad('body')),
  post('create: NUL in value', `${API}/idempotency`, { ...key, value: 'a\u0000b' }, bad('value')),
  post('create: lone surrogate in value', `${API}/idempotency`, { ...key, value: 'a\ud800b' }, bad('value')),
  post('create: NUL in a value key', `${API}/idempotency`, { ...key, value: { 'k\u0000': 1 } }, bad('value')),
  raw(
    'create: value overflows a double',
    `${API}/idempotency`,
    '{"queue_name":"fuzz","key_id":"big","value":1e400}',
    'application/json',
    bad('value'),
  ),
  post(
    'create: existing key',
    `${API}/idempotency`,
    { queue_name: 'fuzz', key_id: 'existing', value: 2 },
    {
      status: 409,
      code: 'EO_IDEMPOTENCY_KEY_EXISTS',
    },
  ),
  post('create: no token', `${API}/idempotency`, key, unauthorized, false),
  {
    name: 'create: wrong token',
    method: 'POST',
    path: `${API}/idempotency`,
    options: { token: 'wrong', body: key },
    expect: unauthorized,
  },
  {
    name: 'create: token in another scheme',
    method: 'POST',
    path: `${API}/idempotency`,
    options: { headers: { authorization: `Basic ${TOKEN}` }, body: key },
    expect: unauthorized,
  },

  // Bodies that are not JSON, or not at all what the endpoint parses
  raw('invalid JSON: open brace', `${API}/idempotency`, '{', 'application/json', invalidJson),
  raw('invalid JSON: cut short', `${API}/idempotency`, '{"queue_name":', 'application/json', invalidJson),
  raw('invalid JSON: trailing comma', `${API}/outbox/retry`, '{"all_failed":true,}', 'application/json', invalidJson),
  raw('invalid JSON: single quotes', `${API}/outbox/retry`, "{'a':1}", 'application/json', invalidJson),
  raw('invalid JSON: open array', `${API}/outbox`, '[1,2', 'application/json', invalidJson),
  raw('invalid JSON: undefined', `${API}/outbox`, 'undefined', 'application/json', invalidJson),
  raw('invalid JSON: two documents', `${API}/cleanup`, '{"a":1}{"b":2}', 'application/json', invalidJson),
  raw('invalid JSON: NaN', `${API}/cleanup`, '{"a": NaN}', 'application/json', invalidJson),
  raw('invalid JSON: NUL', `${API}/idempotency`, '\u0000', 'application/json', invalidJson),
  raw('invalid JSON: unterminated string', `${API}/idempotency`, '"unterminated', 'application/json', invalidJson),
  raw('invalid JSON without a token: auth first', `${API}/idempotency`, '{', 'application/json', unauthorized, false),
  raw('xml', `${API}/idempotency`, '<key/>', 'application/xml', unsupported),
  raw('form', `${API}/idempotency`, 'queue_name=a&key_id=b', 'application/x-www-form-urlencoded', unsupported),
  raw('html', `${API}/outbox/retry`, '<p>', 'text/html', unsupported),
  raw('plain text is a string body, not an object', `${API}/idempotency`, 'queue_name=a', 'text/plain', bad('body')),
  raw(
    'over body_limit',
    `${API}/idempotency`,
    JSON.stringify({ ...key, key_id: 'big', value: 'v'.repeat(3000) }),
    'application/json',
    tooLarge,
  ),
  raw(
    'over body_limit without a token: auth first',
    `${API}/idempotency`,
    JSON.stringify({ ...key, value: 'v'.repeat(3000) }),
    'application/json',
    unauthorized,
    false,
  ),

  // GET /outbox
  get('list: unknown status', `${API}/outbox?status=dead`, bad('status')),
  get('list: status twice', `${API}/outbox?status=failed&status=pending`, bad('status')),
  get('list: limit 0', `${API}/outbox?limit=0`, bad('limit')),
  get('list: limit negative', `${API}/outbox?limit=-5`, bad('limit')),
  get('list: limit over the cap', `${API}/outbox?limit=1001`, bad('limit')),
  get('list: limit not a number', `${API}/outbox?limit=abc`, bad('limit')),
  get('list: limit fractional', `${API}/outbox?limit=1.5`, bad('limit')),
  get('list: limit exponent', `${API}/outbox?limit=1e3`, bad('limit')),
  get('list: limit empty', `${API}/outbox?limit=`, bad('limit')),
  get('list: limit huge', `${API}/outbox?limit=99999999999`, bad('limit')),
  get('list: cursor garbage', `${API}/outbox?cursor=not-a-cursor`, bad('cursor')),
  get('list: cursor empty', `${API}/outbox?cursor=`, bad('cursor')),
  get('list: cursor padded base64', `${API}/outbox?cursor=c2VxOjE=`, bad('cursor')),
  get('list: cursor of a negative seq', `${API}/outbox?cursor=c2VxOi0x`, bad('cursor')),
  get('list: NUL cursor', `${API}/outbox?cursor=%00`, bad('cursor')),
  get('list: unknown parameter', `${API}/outbox?page=2`, bad('page')),

  // POST /outbox/retry
  post('retry: empty body', `${API}/outbox/retry`, {}, bad('ids')),
  post('retry: no ids', `${API}/outbox/retry`, { ids: [] }, bad('ids')),
  post('retry: ids null', `${API}/outbox/retry`, { ids: null }, bad('ids')),
  post('retry: ids a string', `${API}/outbox/retry`, { ids: UUID }, bad('ids')),
  post('retry: ids an object', `${API}/outbox/retry`, { ids: { 0: UUID } }, bad('ids')),
  post('retry: first id not a UUID', `${API}/outbox/retry`, { ids: ['not-a-uuid'] }, bad('ids[0]')),
  post('retry: an id a number', `${API}/outbox/retry`, { ids: [1] }, bad('ids[0]')),
  post('retry: second id bad', `${API}/outbox/retry`, { ids: [UUID, `${UUID}0`] }, bad('ids[1]')),
  // 1001 ids (over the 1000-id cap) are also over this server's 2 KiB body_limit, which is checked first.
  post('retry: 1001 ids', `${API}/outbox/retry`, { ids: Array.from({ length: 1001 }, () => UUID) }, tooLarge),
  post('retry: all_failed false', `${API}/outbox/retry`, { all_failed: false }, bad('all_failed')),
  post('retry: all_failed "true"', `${API}/outbox/retry`, { all_failed: 'true' }, bad('all_failed')),
  post('retry: all_failed 1', `${API}/outbox/retry`, { all_failed: 1 }, bad('all_failed')),
  post('retry: all_failed null', `${API}/outbox/retry`, { all_failed: null }, bad('all_failed')),
  post('retry: both ids and all_failed', `${API}/outbox/retry`, { ids: [UUID], all_failed: true }, bad('ids')),
  post('retry: body an array', `${API}/outbox/retry`, [{ all_failed: true }], bad('body')),
  post('retry: unknown field', `${API}/outbox/retry`, { id: UUID }, bad('id')),
  post('retry: query parameter', `${API}/outbox/retry?all=1`, { all_failed: true }, bad('all')),
  post('retry: no token', `${API}/outbox/retry`, { all_failed: true }, unauthorized, false),

  // POST /cleanup, POST /outbox
  post('cleanup: unknown type', `${API}/cleanup?type=everything`, undefined, bad('type')),
  post('cleanup: type twice', `${API}/cleanup?type=all&type=outbox`, undefined, bad('type')),
  post('cleanup: type in the body', `${API}/cleanup`, { type: 'all' }, bad('body')),
  post('cleanup: unknown parameter', `${API}/cleanup?older_than=1h`, undefined, bad('older_than')),
  post('cleanup: no token', `${API}/cleanup?type=outbox`, undefined, unauthorized, false),
  post('publish: query parameter', `${API}/outbox?now=1`, undefined, bad('now')),
  post('publish: a body', `${API}/outbox`, { now: true }, bad('body')),
  post('publish: no token', `${API}/outbox`, undefined, unauthorized, false),

  // Reads that take no parameters
  get('health: a parameter', `${API}/health?verbose=1`, bad('verbose')),
  get('metrics: a parameter', '/metrics?name=x', bad('name')),

  // Methods a path does not serve (405 comes before auth: it reveals only what OPTIONS would)
  { name: 'PUT /idempotency', method: 'PUT', path: `${API}/idempotency`, options: auth, expect: methodNotAllowed },
  { name: 'PATCH /idempotency', method: 'PATCH', path: `${API}/idempotency`, expect: methodNotAllowed },
  { name: 'GET /outbox/retry', method: 'GET', path: `${API}/outbox/retry`, expect: methodNotAllowed },
  { name: 'DELETE /outbox', method: 'DELETE', path: `${API}/outbox`, options: auth, expect: methodNotAllowed },
  { name: 'GET /cleanup', method: 'GET', path: `${API}/cleanup`, expect: methodNotAllowed },
  { name: 'DELETE /stats', method: 'DELETE', path: `${API}/stats`, expect: methodNotAllowed },
  { name: 'POST /health', method: 'POST', path: `${API}/health`, options: auth, expect: methodNotAllowed },
  { name: 'POST /metrics', method: 'POST', path: '/metrics', expect: methodNotAllowed },
  { name: 'OPTIONS /readyz', method: 'OPTIONS', path: '/readyz', expect: methodNotAllowed },

  // Paths that do not exist
  get('unknown endpoint', `${API}/nope`, notFound),
  get('below a known endpoint', `${API}/idempotency/extra`, notFound),
  get('another API version', '/api/v2/exactly-once/stats', notFound),
  get('double slash', `${API}//stats`, notFound),
  {
    name: 'retry with an id in the path',
    method: 'POST',
    path: `${API}/outbox/retry/1`,
    options: auth,
    expect: notFound,
  },
  get('unknown top-level path', '/nope', notFound),
  get('dashboard asset that does not exist', '/ui/nope.js', notFound),
  get('path traversal', `${API}/..%2F..%2Fetc%2Fpasswd`, notFound),
  get('SQL in the path', `${API}/'%3B%20DROP%20TABLE%20exactly_once_outbox%3B%20--`, notFound),
  get('emoji path', `/${encodeURIComponent('💥')}`, notFound),
  get('broken percent-encoding in the path', `${API}/%E0%A4%A`, {
    status: 400,
    code: 'EO_HTTP_BAD_REQUEST',
  }),
];

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

test(`${CORPUS.length} malformed requests each get their exact status, code and field, and change nothing`, async () => {
  await seedOutbox(fx.db.pool, [{ status: 'failed' }, { status: 'pending' }, { status: 'published' }]);
  const created = await fx.request('POST', `${API}/idempotency`, {
    token: TOKEN,
    body: { queue_name: 'fuzz', key_id: 'existing', value: 1 },
  });
  assert.equal(created.status, 201, created.text);
  const before = await snapshot();
  assert.equal(new Set(CORPUS.map((c) => c.name)).size, CORPUS.length, 'case names are unique');

  const mismatches: string[] = [];
  for (const c of CORPUS) {
    const res = await fx.request(c.method, c.path, c.options ?? {});
    const error = res.json?.error as { code?: unknown; message?: unknown; field?: unknown } | undefined;
    const got = { status: res.status, code: error?.code, field: error?.field };
    const want = { status: c.expect.status, code: c.expect.code, field: c.expect.field };
    const wellFormed =
      typeof error?.message === 'string' && !/\.ts:\d+|node:internal|\n\s+at /.test(res.text) && res.json !== undefined;
    if (!wellFormed || JSON.stringify(got) !== JSON.stringify(want)) {
      mismatches.push(
        `${c.name}: ${c.method} ${c.path.slice(0, 100)}\n    want ${JSON.stringify(want)}\n    got  ${JSON.stringify(got)} ${res.text.slice(0, 200)}`,
      );
    }
  }
  assert.deepEqual(mismatches, [], `\n${mismatches.join('\n')}`);
  assert.deepEqual(await snapshot(), before, 'nothing was written');
  // The server is still fine.
  assert.equal((await fx.request('GET', '/readyz')).status, 200);
});
