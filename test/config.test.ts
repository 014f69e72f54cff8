import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { formatDuration, parseDuration } from '../src/config/duration.js';
import { defaultConfig, loadConfig } from '../src/config/load-config.js';
import { ConfigError } from '../src/errors.js';

const ref = (name: string) => new URL(`./fixtures/reference/${name}.yaml`, import.meta.url).pathname;
const noEnv = { env: {} };

function yamlFile(text: string): string {
  const file = path.join(tmpdir(), `eo-config-${process.pid}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, text);
  return file;
}

describe('durations', () => {
  test('the document forms and compounds parse to milliseconds', () => {
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('5s'), 5000);
    assert.equal(parseDuration('30m'), 1_800_000);
    assert.equal(parseDuration('24h'), 86_400_000);
    assert.equal(parseDuration('168h'), 604_800_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('0'), 0);
    for (const bad of ['', '5', '5 s', 's', '-1s', '5x', '1h 30m', '5sec'])
      assert.equal(parseDuration(bad), undefined, bad);
    assert.equal(formatDuration(5_400_000), '1h30m');
    assert.equal(formatDuration(500), '500ms');
  });
});

describe('the reference document snippets load and mean what they say', () => {
  test('basic configuration (full exactly_once tree)', () => {
    const c = loadConfig(ref('basic'), noEnv);
    assert.equal(c.idempotency.enabled, true);
    assert.equal(c.idempotency.defaultTtl, 86_400_000);
    assert.equal(c.idempotency.keyPrefix, 'idempotency:');
    assert.equal(c.idempotency.cleanupInterval, 3_600_000);
    assert.equal(c.idempotency.batchSize, 100);
    assert.equal(c.idempotency.storage.type, 'redis');
    assert.equal(c.idempotency.storage.redis.keyPattern, '{queue}:idempotency:{tenant}:{key}');
    assert.equal(c.idempotency.storage.redis.hashKeyPattern, '{queue}:idempotency:{tenant}');
    assert.equal(c.idempotency.storage.redis.useHashes, true);
    assert.equal(c.idempotency.storage.redis.compression, false);
    assert.equal(c.outbox.enabled, false);
    assert.equal(c.outbox.storageType, 'redis');
    assert.equal(c.outbox.pollInterval, 5000);
    assert.equal(c.outbox.batchSize, 50);
    assert.equal(c.outbox.maxRetries, 5);
    assert.equal(c.outbox.cleanupInterval, 86_400_000);
    assert.equal(c.outbox.cleanupAfter, 604_800_000);
    assert.deepEqual(c.outbox.retryBackoff, { initialDelay: 1000, maxDelay: 1_800_000, multiplier: 2, jitter: true });
    assert.equal(c.metrics.enabled, true);
    assert.equal(c.metrics.collectionInterval, 30_000);
    assert.deepEqual(c.metrics.histogramBuckets, [0.001, 0.01, 0.1, 1, 10]);
    assert.equal(c.metrics.cardinalityLimit, 1000);
  });

  test('storage type snippets (fragments without exactly_once:)', () => {
    const r = loadConfig(ref('storage-redis'), noEnv).idempotency.storage;
    assert.equal(r.type, 'redis');
    assert.equal(r.redis.useHashes, true);
    const m = loadConfig(ref('storage-memory'), noEnv).idempotency.storage;
    assert.equal(m.type, 'memory');
    assert.deepEqual(m.memory, { maxKeys: 10_000, evictionPolicy: 'fifo' });
    const d = loadConfig(ref('storage-database'), noEnv).idempotency.storage;
    assert.equal(d.type, 'database');
    assert.equal(d.database.tableName, 'idempotency_keys');
    assert.equal(d.database.batchSize, 100);
    assert.equal(d.database.maxConnections, 10);
    assert.equal(d.database.transactionTimeout, 30_000);
  });

  test('performance tuning snippets', () => {
    const mem = loadConfig(ref('tuning-memory'), noEnv);
    assert.equal(mem.idempotency.defaultTtl, 4 * 3_600_000);
    assert.equal(mem.idempotency.cleanupInterval, 1_800_000);
    const thr = loadConfig(ref('tuning-throughput'), noEnv);
    assert.equal(thr.idempotency.batchSize, 500);
    assert.equal(thr.outbox.batchSize, 100);
    assert.equal(thr.outbox.pollInterval, 2000);
    const rel = loadConfig(ref('tuning-reliability'), noEnv);
    assert.equal(rel.outbox.maxRetries, 10);
    assert.deepEqual(rel.outbox.retryBackoff, { initialDelay: 2000, maxDelay: 300_000, multiplier: 1.5, jitter: true });
  });
});

describe('defaults, environment and overrides', () => {
  test('outbox enabled and stored in Postgres by default; connections reach local and docker-compose services', () => {
    const c = defaultConfig();
    assert.equal(c.outbox.enabled, true);
    assert.equal(c.outbox.storageType, 'database');
    assert.equal(c.outbox.queuePattern, 'jobqueue:{priority}_priority');
    assert.equal(c.outbox.dedupWindow, 86_400_000);
    assert.equal(c.database.url, 'postgres://postgres:postgres@127.0.0.1:5432/postgres');
    assert.equal(c.redis.url, 'redis://127.0.0.1:6379');
    assert.ok(Object.isFrozen(c.outbox.retryBackoff));
  });

  test('DATABASE_URL, REDIS_URL and ADMIN_TOKEN win over the file; overrides win over both', () => {
    const file = yamlFile(
      'exactly_once:\n  database:\n    url: postgres://file/db\n  redis:\n    url: redis://file:1\n',
    );
    const env = { DATABASE_URL: 'postgres://env/db', REDIS_URL: 'redis://env:2', ADMIN_TOKEN: 's3cret' };
    const c = loadConfig(file, { env });
    assert.equal(c.database.url, 'postgres://env/db');
    assert.equal(c.redis.url, 'redis://env:2');
    assert.equal(c.admin.token, 's3cret');
    const o = loadConfig(file, { env, overrides: { outbox: { batch_size: 7 }, redis: { url: 'redis://flag:3' } } });
    assert.equal(o.outbox.batchSize, 7);
    assert.equal(o.redis.url, 'redis://flag:3');
  });

  test('EXACTLY_ONCE_CONFIG names the file; an explicit path wins', () => {
    const a = yamlFile('outbox:\n  batch_size: 11\n');
    const b = yamlFile('outbox:\n  batch_size: 22\n');
    assert.equal(loadConfig(undefined, { env: { EXACTLY_ONCE_CONFIG: a } }).outbox.batchSize, 11);
    assert.equal(loadConfig(b, { env: { EXACTLY_ONCE_CONFIG: a } }).outbox.batchSize, 22);
  });
});

describe('bad config is rejected at start, naming the key and the file', () => {
  const cases: [string, string, string, RegExp?][] = [
    [
      'unknown key',
      'exactly_once:\n  outbox:\n    pol_interval: 5s\n',
      'exactly_once.outbox.pol_interval',
      /unknown key/,
    ],
    ['unknown nested key', 'outbox:\n  retry_backoff:\n    factor: 2\n', 'exactly_once.outbox.retry_backoff.factor'],
    ['unknown section', 'outboxes:\n  enabled: true\n', 'exactly_once.outboxes'],
    ['key next to exactly_once', 'exactly_once: {}\nextra: 1\n', 'extra'],
    ['bad duration', 'outbox:\n  poll_interval: 5 seconds\n', 'exactly_once.outbox.poll_interval', /invalid duration/],
    ['bare number duration', 'idempotency:\n  default_ttl: 3600\n', 'exactly_once.idempotency.default_ttl'],
    ['negative batch size', 'outbox:\n  batch_size: -5\n', 'exactly_once.outbox.batch_size'],
    ['zero batch size', 'idempotency:\n  batch_size: 0\n', 'exactly_once.idempotency.batch_size'],
    ['fractional batch size', 'outbox:\n  batch_size: 1.5\n', 'exactly_once.outbox.batch_size'],
    ['negative max_retries', 'outbox:\n  max_retries: -1\n', 'exactly_once.outbox.max_retries'],
    [
      'multiplier below 1',
      'outbox:\n  retry_backoff:\n    multiplier: 0.5\n',
      'exactly_once.outbox.retry_backoff.multiplier',
      />= 1/,
    ],
    [
      'max_delay below initial',
      'outbox:\n  retry_backoff:\n    initial_delay: 1m\n    max_delay: 1s\n',
      'exactly_once.outbox.retry_backoff.max_delay',
    ],
    [
      'unknown storage type',
      'idempotency:\n  storage:\n    type: mongo\n',
      'exactly_once.idempotency.storage.type',
      /redis.*memory.*database/,
    ],
    [
      'unknown eviction policy',
      'idempotency:\n  storage:\n    memory:\n      eviction_policy: random\n',
      'exactly_once.idempotency.storage.memory.eviction_policy',
    ],
    [
      'enabled outbox in redis',
      'outbox:\n  enabled: true\n  storage_type: redis\n',
      'exactly_once.outbox.storage_type',
      /cannot share a transaction/,
    ],
    ['string for boolean', 'metrics:\n  enabled: "yes"\n', 'exactly_once.metrics.enabled'],
    [
      'unsorted buckets',
      'metrics:\n  histogram_buckets: [1, 0.1]\n',
      'exactly_once.metrics.histogram_buckets',
      /increasing/,
    ],
    [
      'bad table name',
      'idempotency:\n  storage:\n    database:\n      table_name: "x; drop table y"\n',
      'exactly_once.idempotency.storage.database.table_name',
    ],
    ['invalid YAML', 'outbox:\n  batch_size: [1,\n', '', /invalid YAML/],
    ['duplicate key', 'outbox:\n  batch_size: 1\n  batch_size: 2\n', '', /invalid YAML/],
    ['not a mapping', '- a\n- b\n', '', /mapping/],
  ];
  for (const [name, text, key, message] of cases) {
    test(name, () => {
      const file = yamlFile(text);
      assert.throws(
        () => loadConfig(file, noEnv),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, String(err));
          assert.equal(err.code, 'EO_CONFIG_INVALID');
          assert.equal(err.path, key);
          assert.equal(err.file, file);
          assert.ok(err.message.startsWith(`${file}: `), err.message);
          if (message) assert.match(err.message, message);
          return true;
        },
      );
    });
  }

  test('a missing file says so', () => {
    assert.throws(() => loadConfig('/nonexistent/exactly-once.yaml', noEnv), /cannot read config file/);
  });
});
