import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Cluster } from 'ioredis';
import { Relay } from '../src/outbox/relay.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { hashTag } from '../src/publishers/hash-tag.js';
import { RedisListPublisher } from '../src/publishers/redis-list.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { freePort, waitFor } from './helpers/services.js';

// A real three-node Redis Cluster on loopback ports: the dedup marker and the list it guards must share a slot, or
// the Lua script is refused with CROSSSLOT.
const nodes: ChildProcess[] = [];
const ports: number[] = [];
let cluster: Cluster;
let fx: OutboxFixture;

before(async () => {
  fx = await outboxFixture('cluster');
  const dir = mkdtempSync(path.join(tmpdir(), 'eo-cluster-'));
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    ports.push(port);
    nodes.push(
      spawn(
        'redis-server',
        [
          ...['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes'],
          ...['--cluster-config-file', `nodes-${port}.conf`, '--save', '', '--appendonly', 'no', '--dir', dir],
        ],
        { stdio: 'ignore' },
      ),
    );
  }
  await waitFor(
    () =>
      ports.every(
        (p) => spawnSync('redis-cli', ['-p', String(p), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG',
      ),
    10_000,
    'cluster nodes to start',
  );
  const create = spawnSync(
    'redis-cli',
    ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-yes'],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(create.status, 0, create.stdout + create.stderr);
  await waitFor(
    () =>
      ports.every((p) =>
        spawnSync('redis-cli', ['-p', String(p), 'cluster', 'info'], { encoding: 'utf8' }).stdout.includes(
          'cluster_state:ok',
        ),
      ),
    20_000,
    'cluster_state:ok on every node',
  );
  cluster = new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })));
  await cluster.ping();
});

after(async () => {
  cluster?.disconnect();
  for (const n of nodes) n.kill('SIGKILL');
  await fx.close();
});

test('on Redis Cluster the relay publishes each event once, marker and list in one slot, order kept', async () => {
  const high = 'cl:jobqueue:high_priority';
  const low = 'cl:jobqueue:low_priority';
  // The two lists live in different slots, so one batch needs two script calls.
  assert.notEqual(hashTag(high), hashTag(low));

  const events = await storeInOutbox(fx.db.pool, [
    ...Array.from({ length: 20 }, (_, n) => ({ aggregateId: `a${n % 4}`, eventType: 'e', payload: { n } })),
    { aggregateId: 'vip', eventType: 'e', payload: { n: 0 }, headers: { priority: 'high' } },
    // One aggregate spanning both lists: its second event must wait for the next batch, never overtake.
    { aggregateId: 'split', eventType: 'e', payload: { n: 0 }, headers: { priority: 'high' } },
    { aggregateId: 'split', eventType: 'e', payload: { n: 1 } },
  ]);
  const publisher = new RedisListPublisher(cluster, { queuePattern: 'cl:jobqueue:{priority}_priority' });
  const relay = new Relay({ config: fx.config, pool: fx.db.pool, publisher });
  const first = await relay.runBatch();
  assert.equal(first.held, 1, 'the split aggregate was cut at the slot change');
  const rest = await relay.publishDue();
  assert.equal(first.published + rest.published, events.length);

  const lowJobs = (await cluster.lrange(low, 0, -1)).reverse().map((j) => JSON.parse(j));
  const highJobs = (await cluster.lrange(high, 0, -1)).reverse().map((j) => JSON.parse(j));
  assert.equal(lowJobs.length + highJobs.length, events.length);
  assert.deepEqual(new Set([...lowJobs, ...highJobs].map((j) => j.id)), new Set(events.map((e) => e.id)));
  for (const agg of ['a0', 'a1', 'a2', 'a3']) {
    const ns = lowJobs.filter((j) => j.aggregate_id === agg).map((j) => j.payload.n);
    assert.deepEqual(
      ns,
      [...ns].sort((x, y) => x - y),
      `order of ${agg}`,
    );
  }
  assert.deepEqual(highJobs.map((j) => j.aggregate_id).sort(), ['split', 'vip']);

  // Re-publishing the same claimed rows (a relay that died before COMMIT) pushes nothing new.
  const again = await publisher.publish(
    (
      await fx.db.pool.query(
        "SELECT seq::text, id, aggregate_type, aggregate_id FROM exactly_once_outbox WHERE aggregate_id = 'vip'",
      )
    ).rows.map((r) => ({
      seq: r.seq,
      id: r.id,
      aggregateType: r.aggregate_type,
      aggregateId: r.aggregate_id,
      eventType: 'e',
      tenantId: '',
      queue: null,
      retryCount: 0,
      maxRetries: null,
      createdAt: new Date(),
      payload: '{}',
      headers: '{}',
      priority: 'high',
      traceparent: null,
      filepath: null,
      filesize: null,
    })),
  );
  assert.deepEqual(again, [{ kind: 'duplicate' }]);
  assert.equal(await cluster.llen(high), 2);
});
