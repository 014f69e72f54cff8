import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type AdminFixture, adminFixture } from './helpers/admin-fixture.js';

// G6: `POST /idempotency` with text Postgres cannot hold (NUL, a lone surrogate) in `value` answered 503 "retry
// later" and counted a storage error (feeding the storage alert), and `1e400` was stored silently as null. Both are
// the caller's bad input: 400 naming the field, nothing written, no storage error counted.

const API = '/api/v1/exactly-once';
let fx: AdminFixture;

before(async () => {
  fx = await adminFixture('idem_admin_input');
});
after(() => fx.close());

const storageErrors = async (): Promise<number> => {
  const res = await fx.request('GET', '/metrics');
  assert.equal(res.status, 200);
  let total = 0;
  for (const line of res.text.split('\n')) {
    if (line.startsWith('exactly_once_storage_errors_total')) total += Number(line.split(' ').pop());
  }
  return total;
};
const rowCount = async (): Promise<number> =>
  (await fx.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM idempotency_keys')).rows[0]?.n ?? -1;

const half = '😀'.slice(0, 1);
/** [why, raw JSON body, the field a 400 must name] */
const CASES: [string, string, string][] = [
  ['NUL in value', JSON.stringify({ queue_name: 'q', key_id: 'k1', value: '\u0000' }), 'value'],
  ['lone surrogate in value', JSON.stringify({ queue_name: 'q', key_id: 'k2', value: half }), 'value'],
  ['NUL in a key of value', JSON.stringify({ queue_name: 'q', key_id: 'k3', value: { 'k\u0000': 1 } }), 'value'],
  [
    'lone surrogate deep in value',
    JSON.stringify({ queue_name: 'q', key_id: 'k4', value: { a: [1, { b: half }] } }),
    'value',
  ],
  ['1e400 (parses to Infinity)', '{"queue_name":"q","key_id":"k5","value":1e400}', 'value'],
  ['-1e400 nested', '{"queue_name":"q","key_id":"k6","value":{"n":[-1e400]}}', 'value'],
  ['lone surrogate in key_id', JSON.stringify({ queue_name: 'q', key_id: `k${half}` }), 'key_id'],
  ['lone surrogate in queue_name', JSON.stringify({ queue_name: `q${half}`, key_id: 'k7' }), 'queue_name'],
  ['lone surrogate in tenant_id', JSON.stringify({ queue_name: 'q', tenant_id: half, key_id: 'k8' }), 'tenant_id'],
];

test('bad text or numbers in the body: 400 naming the field, nothing written, no storage error counted', async () => {
  const errorsBefore = await storageErrors();
  for (const [why, raw, field] of CASES) {
    const res = await fx.request('POST', `${API}/idempotency`, {
      raw,
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.status, 400, `${why}: ${res.status} ${res.text}`);
    assert.equal(res.json?.error?.code, 'EO_INVALID_PARAMETER', `${why}: ${res.text}`);
    assert.equal(res.json?.error?.field, field, `${why}: ${res.text}`);
    assert.match(res.json.error.message, new RegExp(`^${field}`), why);
  }
  assert.equal(await rowCount(), 0, 'nothing was written');
  assert.equal(await storageErrors(), errorsBefore, 'bad input is not a storage error');
});

test('the same characters as ordinary text are fine: escapes and whole emoji round-trip', async () => {
  const value = { text: 'a \\u0000 b', emoji: '😀', big: 1e300, nested: [{ 'k-😀': null }] };
  const created = await fx.request('POST', `${API}/idempotency`, {
    body: { queue_name: 'q', key_id: 'fine', value },
  });
  assert.equal(created.status, 201, created.text);
  const read = await fx.request('GET', `${API}/idempotency?queue=q&key=fine`);
  assert.equal(read.status, 200, read.text);
  assert.deepEqual(read.json.value, value);
});
