import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { redisTarget } from '../src/redis.js';
import { checkRedisPersistence } from '../src/redis-persistence.js';
import { logLines, sample, startHttpRelay } from './helpers/relay-http.js';
import { writeConfigFile } from './helpers/relay-process.js';
import { createTestDatabase, REDIS_URL, redisPrefix, type TestDatabase } from './helpers/services.js';
import { spawnRedisServer } from './helpers/test-servers.js';

// G1 ends where the destination Redis forgets: without AOF a Redis restart loses jobs that Postgres already marks
// published (issue 8 item 6). The relay checks at start, warns loudly and exposes a gauge.

const WARNING = /^DESTINATION REDIS DOES NOT PERSIST JOBS DURABLY/;
const GAUGE = 'exactly_once_redis_persistence_enabled';
let db: TestDatabase;

before(async () => {
  db = await createTestDatabase('redis_durability');
});
after(async () => {
  await db.close();
});

async function persistenceOf(
  redisUrl: string,
  tree: Record<string, unknown> = {},
): Promise<{ gauge: number | undefined; warnings: number; info: object[]; lines: string[] }> {
  const file = writeConfigFile('durability', { database: { url: db.url }, redis: { url: redisUrl }, ...tree });
  const relay = await startHttpRelay(file, [], { LOG_LEVEL: 'info' });
  try {
    const metrics = await relay.get('/metrics');
    assert.equal(metrics.status, 200);
    return {
      gauge: sample(metrics.text, GAUGE, { redis: redisTarget(redisUrl) }),
      warnings: logLines(relay.stderr(), WARNING).length,
      info: logLines(relay.stderr(), 'destination Redis persists jobs (AOF)'),
      lines: logLines(relay.stderr(), /DURABLY/).map((l) => String(l.msg)),
    };
  } finally {
    assert.deepEqual(await relay.stop(), { code: 0, signal: null });
  }
}

test('a relay whose destination Redis has no AOF warns once at start, and its gauge is 0', async () => {
  const probe = new Redis(REDIS_URL);
  try {
    // The shared test Redis runs without persistence; if that ever changes this test must say so, not pass vacuously.
    assert.equal(
      (await checkRedisPersistence(probe)).aof,
      false,
      'the test Redis at REDIS_URL is expected without AOF',
    );
  } finally {
    probe.disconnect();
  }
  const { gauge, warnings, info } = await persistenceOf(REDIS_URL);
  assert.equal(gauge, 0);
  assert.equal(warnings, 1);
  assert.deepEqual(info, []);
});

test('with appendonly yes the gauge is 1 and nothing warns', async () => {
  const durable = await spawnRedisServer(['--appendonly', 'yes', '--appendfsync', 'everysec']);
  try {
    const { gauge, warnings, info } = await persistenceOf(durable.url);
    assert.equal(gauge, 1);
    assert.equal(warnings, 0);
    assert.equal(info.length, 1);
    assert.equal((info[0] as { appendfsync?: string }).appendfsync, 'everysec');
  } finally {
    await durable.stop();
  }
});

test('AOF without fsync is not durable; a disabled CONFIG command falls back to INFO', async () => {
  const noFsync = await spawnRedisServer(['--appendonly', 'yes', '--appendfsync', 'no']);
  const managed = await spawnRedisServer(['--appendonly', 'yes', '--rename-command', 'CONFIG', '']);
  const a = new Redis(noFsync.url);
  const b = new Redis(managed.url);
  try {
    assert.deepEqual(await checkRedisPersistence(a), { aof: true, appendfsync: 'no', save: '', durable: false });
    await assert.rejects(b.config('GET', 'appendonly'), /unknown command/);
    assert.deepEqual(await checkRedisPersistence(b), {
      aof: true,
      appendfsync: undefined,
      save: undefined,
      durable: true,
    });
  } finally {
    a.disconnect();
    b.disconnect();
    await noFsync.stop();
    await managed.stop();
  }
});

test('with the outbox in Redis the warning names what is at risk there: the outbox itself and Redis idempotency keys', async () => {
  const prefix = redisPrefix('durability');
  const { gauge, warnings, lines } = await persistenceOf(REDIS_URL, {
    idempotency: { key_prefix: `${prefix}idem:`, storage: { type: 'redis' } },
    outbox: { storage_type: 'redis', redis: { key_prefix: `${prefix}outbox:` }, queue_pattern: `${prefix}{priority}` },
  });
  assert.equal(gauge, 0);
  assert.equal(warnings, 0, 'no word of Postgres marking jobs published: there is no Postgres outbox');
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(lines[0] as string, /^REDIS DOES NOT PERSIST ITS DATA DURABLY: .*outbox events .*idempotency keys/);
  assert.doesNotMatch(lines[0] as string, /Postgres/);
});

test('with the pg-boss destination and idempotency keys in Postgres nothing in Redis is at risk: no warning', async () => {
  const { gauge, lines } = await persistenceOf(REDIS_URL, {
    outbox: { publisher: 'pg-boss', pg_boss: { queue: 'durability.{priority}' } },
  });
  assert.deepEqual(lines, []);
  assert.equal(gauge, undefined, 'no persistence gauge to alert on');
});
