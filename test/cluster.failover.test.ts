import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { keySlot } from '../src/publishers/hash-tag.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { startTestCluster, type TestCluster } from './helpers/redis-cluster.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { waitFor } from './helpers/services.js';

// A cluster failover while the CLI relay publishes: the replica of the master that holds a destination list takes over
// (CLUSTER FAILOVER, as an operator or a failure detector would start it). The relay must ride it out by itself —
// MOVED / READONLY / connection errors are outages, retried without burning an event's retries — and nothing may be
// lost or pushed twice. The cluster (three masters, three replicas) dies with this file.
const EVENTS = 1500;
const AGGREGATES = 30;
const LISTS = 3;

let tc: TestCluster;
let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('cluster_failover', { batch_size: 10 });
  tc = await startTestCluster({ replicas: 1 });
});
after(async () => {
  await tc?.close();
  await fx?.close();
});

const listOf = (agg: number) => `${fx.prefix}fo:${agg % LISTS}`;

/** A direct connection to one node, for ROLE / INFO / CLUSTER FAILOVER (commands a cluster client would route). */
function nodeClient(port: number): Redis {
  const r = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
  r.on('error', () => {});
  return r;
}

test('a master fails over to its replica mid-publishing: the relay recovers, every event once, in order', async (t) => {
  // The replica of the master serving list 0.
  const slot = keySlot(listOf(0));
  const masterKey = tc.client.slots[slot]?.[0];
  assert.ok(masterKey, `slot ${slot} has a master`);
  const master = nodeClient(Number(masterKey.split(':')[1]));
  let replicaPort = 0;
  try {
    const id = (await master.call('CLUSTER', 'MYID')) as string;
    // `redis-cli --cluster create` attaches the replicas after the masters: wait until this one's is known.
    await waitFor(
      async () => {
        const lines = (await master.call('CLUSTER', 'REPLICAS', id)) as string[];
        const m = /^\S+ [\d.]+:(\d+)@/.exec(lines[0] ?? '');
        replicaPort = m ? Number(m[1]) : 0;
        return replicaPort > 0;
      },
      20_000,
      `a replica of ${masterKey}`,
    );
  } finally {
    master.disconnect();
  }
  const replica = nodeClient(replicaPort);
  try {
    await waitFor(
      async () => (await replica.info('replication')).includes('master_link_status:up'),
      20_000,
      'the replica to sync',
    );

    for (let start = 0; start < EVENTS; start += 500) {
      const events: NewOutboxEvent[] = [];
      for (let i = start; i < start + 500; i++) {
        const agg = i % AGGREGATES;
        events.push({
          aggregateId: `a${agg}`,
          eventType: 'tick',
          payload: { n: Math.floor(i / AGGREGATES) },
          queue: listOf(agg),
        });
      }
      await fx.kysely.transaction().execute((trx) => storeInOutbox(trx, events, fx.config.outbox));
    }
    const configFile = writeConfigFile('cluster-failover', {
      database: { url: fx.db.url },
      redis: { cluster: { nodes: tc.ports.map((p) => `redis://127.0.0.1:${p}`) } },
      outbox: {
        queue_pattern: fx.config.outbox.queuePattern,
        allowed_queues: [`${fx.prefix}*`],
        batch_size: 10,
        poll_interval: '200ms',
        retry_backoff: { initial_delay: '100ms', jitter: false },
        circuit_breaker: { open_for: '500ms' },
      },
    });
    const published = async () =>
      (await fx.db.pool.query("SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'published'")).rows[0]
        .n as number;
    let relay: RelayProcess | undefined;
    let atFailover = 0;
    try {
      relay = spawnRelay(configFile);
      await waitFor(async () => (await published()) >= EVENTS / 5, 60_000, 'a fifth of the events published');
      atFailover = await published();
      assert.equal(await replica.call('CLUSTER', 'FAILOVER'), 'OK');
      await waitFor(
        async () => ((await replica.call('ROLE')) as unknown[])[0] === 'master',
        30_000,
        'the replica to become master',
      );
      await waitFor(async () => (await published()) === EVENTS, 90_000, 'every event published after the failover');
      assert.equal(relay.child.exitCode, null, `the relay kept running:\n${relay.stderr()}`);
    } finally {
      relay?.child.kill('SIGKILL');
      if (relay) await exitWithin(relay, 10_000);
    }
    assert.ok(atFailover < EVENTS, 'the failover happened while events were pending');

    const jobs: Record<string, unknown>[] = [];
    for (let n = 0; n < LISTS; n++) {
      const raw = await tc.client.lrange(listOf(n), 0, -1);
      jobs.push(...raw.reverse().map((j) => JSON.parse(j) as Record<string, unknown>));
    }
    const counts = new Map<string, number>();
    for (const j of jobs) counts.set(j.id as string, (counts.get(j.id as string) ?? 0) + 1);
    assert.equal([...counts.values()].filter((c) => c > 1).length, 0, 'no event pushed twice');
    assert.equal(counts.size, EVENTS, 'every event pushed');
    const next = new Map<string, number>();
    let reordered = 0;
    for (const j of jobs) {
      const n = (j.payload as { n: number }).n;
      if (n !== (next.get(j.aggregate_id as string) ?? 0)) reordered++;
      next.set(j.aggregate_id as string, n + 1);
    }
    assert.equal(reordered, 0, 'per-aggregate order held');
    const burned = await fx.db.pool.query('SELECT count(*)::int AS n FROM exactly_once_outbox WHERE retry_count > 0');
    assert.equal(burned.rows[0].n, 0, 'the failover is an outage, not event failures');
    t.diagnostic(`failover with ${atFailover} of ${EVENTS} published`);
  } finally {
    replica.disconnect();
  }
});
