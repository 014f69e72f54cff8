import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { keySlot } from '../src/publishers/hash-tag.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { startTestCluster, type TestCluster } from './helpers/redis-cluster.js';
import { startHttpRelay } from './helpers/relay-http.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { waitFor } from './helpers/services.js';

// The CLI relay against a test-owned three-master Redis Cluster, configured only through `redis.cluster.nodes` in its
// YAML: G2 (each event once) and G3 (order per aggregate) must hold across slots and across a relay's SIGKILL. The
// cluster dies with this file, so its keys need no cleanup; the database is dropped by the fixture.
const EVENTS = 3000;
const AGGREGATES = 60;
const LISTS = 6;

let tc: TestCluster;
let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('cluster_relay', { batch_size: 20 });
  tc = await startTestCluster();
});
after(async () => {
  await tc?.close();
  await fx?.close();
});

const listOf = (agg: number) => `${fx.prefix}list:${agg % LISTS}`;

function clusterConfig(extra: Record<string, unknown> = {}): string {
  return writeConfigFile('cluster-relay', {
    database: { url: fx.db.url },
    redis: { cluster: { nodes: tc.ports.map((p) => `redis://127.0.0.1:${p}`) } },
    outbox: {
      queue_pattern: fx.config.outbox.queuePattern,
      allowed_queues: [`${fx.prefix}*`],
      batch_size: 20,
      poll_interval: '200ms',
    },
    ...extra,
  });
}

test(`the CLI relay on a 3-master cluster, one relay SIGKILLed mid-way: ${EVENTS} events each once, in aggregate order`, async (t) => {
  const slots = new Set(Array.from({ length: LISTS }, (_, n) => keySlot(listOf(n))));
  const masters = new Set(
    await Promise.all(
      [...slots].map(async (slot) => {
        const node = tc.client.slots[slot]?.[0];
        assert.ok(node, `a master for slot ${slot}`);
        return node;
      }),
    ),
  );
  assert.ok(masters.size >= 2, `the lists spread over ${masters.size} master(s); pick other names`);

  for (let start = 0; start < EVENTS; start += 500) {
    const events: NewOutboxEvent[] = [];
    for (let i = start; i < start + 500; i++) {
      const agg = i % AGGREGATES;
      events.push({
        aggregateType: 'acct',
        aggregateId: `a${agg}`,
        eventType: 'tick',
        payload: { n: Math.floor(i / AGGREGATES) },
        queue: listOf(agg),
      });
    }
    await fx.kysely.transaction().execute((trx) => storeInOutbox(trx, events, fx.config.outbox));
  }

  const configFile = clusterConfig();
  const published = async () =>
    (await fx.db.pool.query("SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'published'")).rows[0]
      .n as number;

  // Relay A crashes by itself in the crash window (after its 2nd push, before COMMIT); relay B is SIGKILLed by us.
  const relays: RelayProcess[] = [];
  let restarted: Awaited<ReturnType<typeof startHttpRelay>> | undefined;
  try {
    const a = spawnRelay(configFile, [], { EXACTLY_ONCE_TEST_FAULT: 'kill-after-push:2' });
    const b = spawnRelay(configFile);
    relays.push(a, b);
    const aExit = await exitWithin(a, 60_000);
    assert.equal(aExit.signal, 'SIGKILL', `relay A should crash after its push:\n${a.stderr()}`);
    await waitFor(async () => (await published()) >= EVENTS / 3, 60_000, 'a third of the events published');
    const before = await published();
    b.child.kill('SIGKILL');
    await exitWithin(b, 10_000);
    assert.ok(before < EVENTS, 'relay B was killed while events were still pending');

    // The restart serves the admin API too: readiness and stats must work against the cluster.
    restarted = await startHttpRelay(configFile);
    relays.push(spawnRelay(configFile));
    await waitFor(async () => (await published()) === EVENTS, 60_000, 'every event published');

    const ready = await restarted.get('/readyz');
    assert.equal(ready.status, 200, ready.text);
    const stats = await restarted.get('/api/v1/exactly-once/stats?queue=cluster-q');
    assert.equal(stats.status, 200, stats.text);
    t.diagnostic(`relay B was SIGKILLed with ${before} of ${EVENTS} published`);
  } finally {
    for (const r of relays) r.child.kill('SIGKILL');
    await Promise.all(relays.map((r) => exitWithin(r, 10_000)));
    await restarted?.stop();
  }

  const jobs: Record<string, unknown>[] = [];
  for (let n = 0; n < LISTS; n++) {
    const raw = await tc.client.lrange(listOf(n), 0, -1);
    jobs.push(...raw.reverse().map((j) => JSON.parse(j) as Record<string, unknown>));
  }
  const counts = new Map<string, number>();
  for (const j of jobs) counts.set(j.id as string, (counts.get(j.id as string) ?? 0) + 1);
  assert.equal([...counts.values()].filter((c) => c > 1).length, 0, 'no event pushed twice');
  assert.equal(counts.size, EVENTS, 'every event pushed');
  assert.equal(jobs.length, EVENTS);
  const next = new Map<string, number>();
  let reordered = 0;
  for (const j of jobs) {
    const agg = j.aggregate_id as string;
    const n = (j.payload as { n: number }).n;
    if (n !== (next.get(agg) ?? 0)) reordered++;
    next.set(agg, n + 1);
  }
  assert.equal(reordered, 0, 'per-aggregate order held');
});

test('a cluster config that names a database, or sets redis.url too, is refused at start with the key named', async () => {
  const withDb = writeConfigFile('cluster-bad', {
    database: { url: fx.db.url },
    redis: { cluster: { nodes: [`redis://127.0.0.1:${tc.ports[0]}/2`] } },
  });
  const bad = spawnRelay(withDb);
  const exit = await exitWithin(bad, 20_000);
  assert.notEqual(exit.code, 0);
  assert.match(bad.stderr(), /redis\.cluster\.nodes\.0.*only database 0/s);

  const both = writeConfigFile('cluster-both', {
    database: { url: fx.db.url },
    redis: { url: 'redis://127.0.0.1:6379', cluster: { nodes: [`redis://127.0.0.1:${tc.ports[0]}`] } },
  });
  const second = spawnRelay(both);
  assert.notEqual((await exitWithin(second, 20_000)).code, 0);
  assert.match(second.stderr(), /redis\.url.*redis\.cluster\.nodes/s);
});
