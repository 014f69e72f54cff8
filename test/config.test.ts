import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { formatDuration, parseDuration } from '../src/config/duration.js';
import { defaultConfig, loadConfig } from '../src/config/load-config.js';
import { ConfigError } from '../src/errors.js';

const ref = (name: string) => new URL(`./fixtures/reference/${name}.yaml`, import.meta.url).pathname;
const noEnv = { env: {} };

const dir = mkdtempSync(path.join(tmpdir(), 'eo-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function yamlFile(text: string): string {
  const file = path.join(dir, `${Math.random().toString(36).slice(2)}.yaml`);
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
    // 0 with its unit, as every other duration in a message, and it parses back.
    assert.equal(formatDuration(0), '0ms');
    for (const ms of [0, 500, 1000, 5_400_000]) assert.equal(parseDuration(formatDuration(ms)), ms);
  });
});

// The reference document: docs/reference-api.md.
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
      'outbox in redis with the stream publisher',
      'outbox:\n  enabled: true\n  storage_type: redis\n  publisher: stream\n',
      'exactly_once.outbox.publisher',
      /not available with outbox.storage_type: redis/,
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

/** `loadConfig` on a YAML text must throw a ConfigError at `key` whose message matches every pattern. */
function rejects(text: string, key: string, ...patterns: RegExp[]): void {
  const file = yamlFile(text);
  assert.throws(
    () => loadConfig(file, noEnv),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.path, key, err.message);
      assert.equal(err.file, file);
      assert.ok(err.message.startsWith(`${file}: ${key}: `), err.message);
      for (const p of patterns) assert.match(err.message, p);
      return true;
    },
  );
}

const accepts = (text: string) => loadConfig(yamlFile(text), noEnv);

describe('durations that would silently switch a guarantee off are refused (G6)', () => {
  // key path under exactly_once, and the YAML that sets it to 0
  const zero: [string, string][] = [
    ['idempotency.lease', 'idempotency:\n  lease: 0\n'],
    ['idempotency.wait_timeout', 'idempotency:\n  wait_timeout: 0s\n'],
    ['idempotency.default_ttl', 'idempotency:\n  default_ttl: 0\n'],
    ['idempotency.cleanup_interval', 'idempotency:\n  cleanup_interval: 0\n'],
    [
      'idempotency.storage.database.transaction_timeout',
      'idempotency:\n  storage:\n    database:\n      transaction_timeout: 0\n',
    ],
    ['outbox.poll_interval', 'outbox:\n  poll_interval: 0\n'],
    ['outbox.claim_timeout', 'outbox:\n  claim_timeout: 0\n'],
    ['outbox.publish_timeout', 'outbox:\n  publish_timeout: 0ms\n'],
    ['outbox.dedup_window', 'outbox:\n  dedup_window: 0\n'],
    ['outbox.cleanup_interval', 'outbox:\n  cleanup_interval: 0\n'],
    ['outbox.cleanup_after', 'outbox:\n  cleanup_after: 0\n'],
    ['outbox.retry_backoff.initial_delay', 'outbox:\n  retry_backoff:\n    initial_delay: 0\n'],
  ];
  for (const [key, text] of zero) {
    test(`${key}: 0 is refused`, () => rejects(text, `exactly_once.${key}`, /must be (greater than 0|at least)/));
  }

  test('minimums where a tiny value breaks the mechanism, each saying why', () => {
    rejects('idempotency:\n  lease: 99ms\n', 'exactly_once.idempotency.lease', /at least 100ms/, /renew/);
    rejects('outbox:\n  poll_interval: 9ms\n', 'exactly_once.outbox.poll_interval', /at least 10ms/, /busy loop/);
    rejects('outbox:\n  publish_timeout: 99ms\n', 'exactly_once.outbox.publish_timeout', /at least 100ms/);
    rejects('outbox:\n  dedup_window: 999ms\n', 'exactly_once.outbox.dedup_window', /at least 1s/, /uncommitted/);
    // The minimums themselves are fine.
    const c = accepts(
      'idempotency:\n  lease: 100ms\noutbox:\n  poll_interval: 10ms\n  publish_timeout: 100ms\n  claim_timeout: 200ms\n  dedup_window: 1s\n',
    );
    assert.deepEqual(
      [
        c.idempotency.lease,
        c.outbox.pollInterval,
        c.outbox.publishTimeout,
        c.outbox.claimTimeout,
        c.outbox.dedupWindow,
      ],
      [100, 10, 100, 200, 1000],
    );
  });

  test('metrics.collection_interval: 0 still means "refresh on every scrape"', () => {
    assert.equal(accepts('metrics:\n  collection_interval: 0\n').metrics.collectionInterval, 0);
  });
});

describe('durations beyond what a timer or a Postgres int holds are refused', () => {
  const INT_MAX = 2 ** 31 - 1;
  test('retry_backoff.max_delay is capped at 2^31-1 ms (the relay passes delays as Postgres int)', () => {
    rejects(
      'outbox:\n  retry_backoff:\n    max_delay: 597h\n',
      'exactly_once.outbox.retry_backoff.max_delay',
      /at most 2147483647ms/,
      /24\.8 days/,
    );
    assert.equal(
      accepts(`outbox:\n  retry_backoff:\n    max_delay: ${INT_MAX}ms\n`).outbox.retryBackoff.maxDelay,
      INT_MAX,
    );
  });

  for (const [key, text] of [
    ['outbox.claim_timeout', 'outbox:\n  claim_timeout: 600h\n'],
    ['outbox.poll_interval', 'outbox:\n  poll_interval: 600h\n'],
    ['outbox.publish_timeout', 'outbox:\n  publish_timeout: 600h\n  claim_timeout: 1s\n'],
    ['idempotency.lease', 'idempotency:\n  lease: 600h\n'],
    ['idempotency.wait_timeout', 'idempotency:\n  wait_timeout: 600h\n'],
    [
      'idempotency.storage.database.transaction_timeout',
      'idempotency:\n  storage:\n    database:\n      transaction_timeout: 600h\n',
    ],
  ] as const) {
    test(`${key}: 600h is refused`, () => rejects(text, `exactly_once.${key}`, /at most 2147483647ms/));
  }

  test('long retention keys are not capped', () => {
    const c = accepts('idempotency:\n  default_ttl: 8760h\noutbox:\n  cleanup_after: 8760h\n  dedup_window: 8760h\n');
    assert.equal(c.outbox.cleanupAfter, 8760 * 3_600_000);
  });
});

describe('keys that must agree with each other', () => {
  test('publish_timeout >= claim_timeout is refused, naming both keys', () => {
    for (const [publish, claim] of [
      ['5s', '5s'],
      ['10s', '5s'],
    ]) {
      rejects(
        `outbox:\n  publish_timeout: ${publish}\n  claim_timeout: ${claim}\n`,
        'exactly_once.outbox.publish_timeout',
        /outbox\.claim_timeout/,
        /less than/,
      );
    }
    // The default claim_timeout (30s) with a publish_timeout above it.
    rejects(
      'outbox:\n  publish_timeout: 31s\n',
      'exactly_once.outbox.publish_timeout',
      /claim_timeout \(30s; got 31s\)/,
    );
    assert.equal(accepts('outbox:\n  publish_timeout: 4999ms\n  claim_timeout: 5s\n').outbox.publishTimeout, 4999);
  });

  test('dedup_window <= claim_timeout is refused: a re-claimed event would be pushed again', () => {
    rejects(
      'outbox:\n  dedup_window: 30s\n',
      'exactly_once.outbox.dedup_window',
      /longer than outbox\.claim_timeout \(30s; got 30s\)/,
    );
    assert.equal(
      accepts('outbox:\n  dedup_window: 2s\n  claim_timeout: 1s\n  publish_timeout: 500ms\n').outbox.dedupWindow,
      2000,
    );
  });

  test('idempotency.default_ttl may be shorter than lease: an in-progress key ends only when its lease lapses (G4)', () => {
    // test/idempotency.long-processor.test.ts proves the behaviour; the config must not refuse it.
    assert.equal(accepts('idempotency:\n  default_ttl: 10s\n  lease: 30s\n').idempotency.defaultTtl, 10_000);
  });

  test('wait_timeout may be shorter or longer than lease: both are safe (fail fast, or wait and take over)', () => {
    assert.equal(accepts('idempotency:\n  wait_timeout: 1s\n  lease: 1m\n').idempotency.waitTimeout, 1000);
    assert.equal(accepts('idempotency:\n  wait_timeout: 1m\n  lease: 1s\n').idempotency.waitTimeout, 60_000);
  });

  test('idempotency.batch_size (the tuning snippet) drives cleanup under the default database storage', () => {
    const thr = loadConfig(ref('tuning-throughput'), noEnv);
    assert.equal(thr.idempotency.storage.type, 'database');
    assert.equal(thr.idempotency.storage.database.batchSize, 500);
    // The specific key wins when it alone is set; both set to different values is ambiguous.
    assert.equal(
      accepts('idempotency:\n  storage:\n    database:\n      batch_size: 7\n').idempotency.storage.database.batchSize,
      7,
    );
    rejects(
      'idempotency:\n  batch_size: 500\n  storage:\n    database:\n      batch_size: 7\n',
      'exactly_once.idempotency.batch_size',
      /storage\.database\.batch_size/,
    );
    assert.equal(
      accepts('idempotency:\n  batch_size: 7\n  storage:\n    database:\n      batch_size: 7\n').idempotency.batchSize,
      7,
    );
  });
});

describe('the admin token is usable or refused at start', () => {
  const envCase = (token: string) => () => loadConfig(undefined, { env: { ADMIN_TOKEN: token } });
  test('ADMIN_TOKEN= (empty) is refused instead of meaning "no token"', () => {
    assert.throws(envCase(''), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.path, 'ADMIN_TOKEN');
      assert.match(err.message, /^ADMIN_TOKEN: is set but empty/);
      assert.match(err.message, /unset it/);
      return true;
    });
  });

  test('a token that cannot travel in a Bearer header is refused, naming ADMIN_TOKEN', () => {
    for (const token of ['has space', ' lead', 'tab\there', 'new\nline', 'ünïcode', 'quo"te', 'a=b', 'comma,x']) {
      assert.throws(envCase(token), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.equal(err.path, 'ADMIN_TOKEN', JSON.stringify(token));
        assert.match(err.message, /Bearer/);
        assert.ok(!err.message.includes(token), 'the message does not echo the secret');
        return true;
      });
    }
    for (const token of ['s3cret', 'abc-DEF_123.~+/', 'YWJjZGVmZw==', 'a'.repeat(256)]) {
      assert.equal(loadConfig(undefined, { env: { ADMIN_TOKEN: token } }).admin.token, token);
    }
  });

  test('admin.token in the file gets the same checks, naming the key and the file', () => {
    rejects('admin:\n  token: ""\n', 'exactly_once.admin.token', /empty/);
    rejects('admin:\n  token: "two words"\n', 'exactly_once.admin.token', /Bearer/);
    assert.equal(accepts('admin:\n  token: t0ken\n').admin.token, 't0ken');
  });
});

describe('admin.allowed_hosts: the names the admin API answers to besides addresses and localhost', () => {
  test('host names, .domain and *; a scheme or a port is refused, naming the entry', () => {
    assert.deepEqual(loadConfig(undefined, { env: {} }).admin.allowedHosts, []);
    assert.deepEqual(accepts('admin:\n  allowed_hosts: [relay-1, .svc.internal, "*"]\n').admin.allowedHosts, [
      'relay-1',
      '.svc.internal',
      '*',
    ]);
    rejects(
      'admin:\n  allowed_hosts: ["relay-1:8080"]\n',
      'exactly_once.admin.allowed_hosts.0',
      /without scheme or port/,
    );
    rejects('admin:\n  allowed_hosts: [ok, "http://x"]\n', 'exactly_once.admin.allowed_hosts.1', /without scheme/);
  });

  test('ADMIN_ALLOWED_HOSTS (comma-separated) wins over the file', () => {
    const file = yamlFile('exactly_once:\n  admin:\n    allowed_hosts: [from-file]\n');
    const c = loadConfig(file, { env: { ADMIN_ALLOWED_HOSTS: ' relay-1, relay-2 ,,' } });
    assert.deepEqual(c.admin.allowedHosts, ['relay-1', 'relay-2']);
    assert.deepEqual(loadConfig(file, { env: { ADMIN_ALLOWED_HOSTS: '' } }).admin.allowedHosts, []);
    assert.throws(
      () => loadConfig(undefined, { env: { ADMIN_ALLOWED_HOSTS: 'relay-1:8080' } }),
      (err: unknown) => err instanceof ConfigError && err.path === 'exactly_once.admin.allowed_hosts.0',
    );
  });
});
