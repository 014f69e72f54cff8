import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { configFromObject } from '../src/config/load-config.js';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { createPublisher } from '../src/publishers/create-publisher.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { insertRawEvents } from './helpers/raw-events.js';

// go-redis-work-queue decodes `filesize` into a Go int64: encoding/json takes the raw number token and runs
// strconv.ParseInt on it, so `9223372036854776000`, `1e+21` or `1.5` make the job undecodable and the worker drops
// it. The relay must write only tokens that decode, whatever number the payload holds.

let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('job-shape');
});
after(async () => {
  await fx.close();
});

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** What Go's encoding/json does for an int64 field: the raw token must be an integer literal within range. */
function decodeGoInt64(token: string): bigint {
  if (!/^-?(0|[1-9][0-9]*)$/.test(token)) throw new Error(`json: cannot unmarshal number ${token} into int64`);
  const value = BigInt(token);
  if (value < INT64_MIN || value > INT64_MAX) throw new Error(`json: cannot unmarshal number ${token} into int64`);
  return value;
}

/** The raw `filesize` token of a job's JSON text, as a decoder sees it (never through a JS number). */
function filesizeToken(job: string): string {
  const m = /"filesize":([^,}]*)/.exec(job);
  assert.ok(m, `filesize in ${job.slice(0, 200)}`);
  return m[1] as string;
}

test('filesize is always an integer a Go int64 decodes: exact when the payload holds one, else 0', async () => {
  // payload literal (as a producer's JSON may hold it) -> the filesize the worker must see
  const cases: [string, string][] = [
    ['2048', '2048'],
    ['123456789012345678', '123456789012345678'], // beyond 2^53: a JS number would round it
    ['9223372036854775807', '9223372036854775807'],
    ['-9223372036854775808', '-9223372036854775808'],
    ['-42', '-42'],
    ['-0', '0'],
    ['1e3', '1000'],
    ['1.0', '1'],
    ['1000.000', '1000'],
    ['9223372036854775808', '0'], // out of int64 range
    ['-9223372036854775809', '0'],
    ['1e21', '0'],
    ['18446744073709551616', '0'],
    ['1e400', '0'],
    ['1.5', '0'], // not a whole number of bytes
    ['2.5e-3', '0'],
    ['"2048"', '0'], // a string is not a size
    ['null', '0'],
  ];
  const ids = await insertRawEvents(fx.db.pool, [
    ...cases.map(([literal], n) => ({ aggregateId: `f${n}`, payload: `{"filesize":${literal},"n":${n}}` })),
    { aggregateId: 'none', payload: '{"filepath":"/x"}' },
  ]);
  const summary = await fx.relay().publishDue();
  assert.equal(summary.published, ids.length);

  const raw = (await fx.redis.lrange(fx.lowQueue, 0, -1)).reverse();
  assert.equal(raw.length, ids.length);
  const byId = new Map(raw.map((job) => [JSON.parse(job).id as string, job]));
  cases.forEach(([literal, expected], n) => {
    const job = byId.get(ids[n] as string) as string;
    const token = filesizeToken(job);
    assert.equal(decodeGoInt64(token), BigInt(expected), `payload filesize ${literal} -> ${token}`);
    assert.equal(token, expected, `payload filesize ${literal}`);
  });
  const none = byId.get(ids[cases.length] as string) as string;
  assert.equal(filesizeToken(none), '0');
  assert.equal(JSON.parse(none).filepath, '/x');
});

test('outbox.default_priority: high sends events without a priority header to the high list', async () => {
  const config = configFromObject({
    database: { url: fx.db.url },
    redis: { url: fx.config.redis.url },
    outbox: {
      queue_pattern: fx.config.outbox.queuePattern,
      allowed_queues: [`${fx.prefix}*`],
      default_priority: 'high',
    },
  });
  assert.equal(config.outbox.defaultPriority, 'high');
  const [plain, low] = await storeInOutboxStandalone(fx.db.pool, [
    { aggregateId: 'prio-default', eventType: 'no-header', payload: {} },
    { aggregateId: 'prio-low', eventType: 'low-header', payload: {}, headers: { priority: 'low' } },
  ]);
  const relay = fx.relay({ config, publisher: createPublisher(config, { redis: fx.redis }) });
  assert.equal((await relay.publishDue()).published, 2);

  const high = await fx.jobs(fx.highQueue);
  assert.deepEqual(
    high.map((j) => [j.id, j.priority]),
    [[plain?.id, 'high']],
  );
  const lows = (await fx.jobs(fx.lowQueue)).filter((j) => j.id === low?.id);
  assert.deepEqual(
    lows.map((j) => j.priority),
    ['low'],
    'a priority header still wins over the default',
  );
});
