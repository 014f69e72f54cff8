import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { configFromObject, loadConfig } from '../src/config/load-config.js';
import { ConfigError } from '../src/errors.js';

// `redis.cluster` in YAML and REDIS_CLUSTER_NODES: validated once, at start, with the key path in every refusal.
const refused = (tree: Record<string, unknown>, key: string, message: RegExp) =>
  assert.throws(
    () => configFromObject(tree),
    (err: unknown) => err instanceof ConfigError && err.message.includes(key) && message.test(err.message),
  );

test('redis.cluster.nodes with the ioredis defaults; no cluster unless configured', () => {
  assert.equal(configFromObject({}).redis.cluster, undefined);
  const cfg = configFromObject({ redis: { cluster: { nodes: ['redis://127.0.0.1:7000', 'redis://127.0.0.1:7001'] } } });
  assert.deepEqual(cfg.redis.cluster, {
    nodes: ['redis://127.0.0.1:7000', 'redis://127.0.0.1:7001'],
    maxRedirections: 16,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
  });
});

test('REDIS_CLUSTER_NODES (comma-separated) sets the nodes over the file', () => {
  const file = path.join(tmpdir(), `eo-cluster-config-${process.pid}.yaml`);
  writeFileSync(
    file,
    'exactly_once:\n  redis:\n    cluster:\n      nodes: ["redis://10.0.0.1:7000"]\n      max_redirections: 5\n',
  );
  let cfg: ReturnType<typeof loadConfig>;
  try {
    cfg = loadConfig(file, { env: { REDIS_CLUSTER_NODES: 'redis://127.0.0.1:7000, redis://127.0.0.1:7001,' } });
  } finally {
    rmSync(file, { force: true });
  }
  assert.deepEqual(cfg.redis.cluster?.nodes, ['redis://127.0.0.1:7000', 'redis://127.0.0.1:7001']);
  assert.equal(cfg.redis.cluster?.maxRedirections, 5);
  assert.throws(
    () => loadConfig(undefined, { env: { REDIS_CLUSTER_NODES: ' , ' } }),
    (err: unknown) => err instanceof ConfigError && /redis\.cluster\.nodes/.test(err.message),
  );
});

test('cluster configs one client cannot serve are refused, naming the key', () => {
  refused({ redis: { cluster: { nodes: [] } } }, 'redis.cluster.nodes', /at least one node/);
  refused({ redis: { cluster: { nodes: ['127.0.0.1:7000'] } } }, 'redis.cluster.nodes.0', /redis:\/\/ URL/);
  refused({ redis: { cluster: { nodes: ['redis://127.0.0.1:7000/3'] } } }, 'redis.cluster.nodes.0', /only database 0/);
  refused(
    { redis: { cluster: { nodes: ['redis://a:7000', 'rediss://b:7000'] } } },
    'redis.cluster.nodes.1',
    /scheme .* or credentials/,
  );
  refused(
    { redis: { url: 'redis://127.0.0.1:6379', cluster: { nodes: ['redis://a:7000'] } } },
    'redis.url',
    /redis\.cluster\.nodes/,
  );
  refused(
    { redis: { cluster: { nodes: ['redis://a:7000'], scale_reads: 'slave' } } },
    'redis.cluster.scale_reads',
    /unknown key/,
  );
  refused(
    { redis: { cluster: { nodes: ['redis://a:7000'], retry_delay_on_failover: 0 } } },
    'retry_delay_on_failover',
    /greater than 0/,
  );
  assert.throws(
    () =>
      loadConfig(undefined, { env: { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_CLUSTER_NODES: 'redis://a:7000' } }),
    (err: unknown) => err instanceof ConfigError && err.message.includes('redis.url'),
  );
});

test('outbox.publisher: list by default, stream on request; outbox.stream.maxlen is a positive integer', () => {
  assert.equal(configFromObject({}).outbox.publisher, 'list');
  const cfg = configFromObject({ outbox: { publisher: 'stream', stream: { maxlen: 100000 } } });
  assert.deepEqual([cfg.outbox.publisher, cfg.outbox.stream.maxlen], ['stream', 100000]);
  refused({ outbox: { publisher: 'kafka' } }, 'outbox.publisher', /stream|list/);
  refused({ outbox: { stream: { maxlen: 0 } } }, 'outbox.stream.maxlen', /./);
});
