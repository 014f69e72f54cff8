import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { clusterCrashRun } from './helpers/cluster-crash.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { startTestCluster, type TestCluster } from './helpers/redis-cluster.js';
import { exitWithin, spawnRelay, writeConfigFile } from './helpers/relay-process.js';

// The CLI relay against a test-owned three-master Redis Cluster, configured only through `redis.cluster.nodes` in its
// YAML, publishing to lists on several slots: G2 (each event once) and G3 (order per aggregate) must hold across slots
// and across relays' SIGKILLs (test/helpers/cluster-crash.ts; test/cluster.stream-relay.test.ts runs the same with
// streams). The cluster dies with this file, so its keys need no cleanup; the database is dropped by the fixture.
const EVENTS = 20_000;
const AGGREGATES = 200;

let tc: TestCluster;
let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('cluster_relay');
  tc = await startTestCluster();
});
after(async () => {
  await tc?.close();
  await fx?.close();
});

test(`the CLI relay on a 3-master cluster, relays SIGKILLed and restarted: ${EVENTS} events to lists each once, in aggregate order`, async (t) => {
  await clusterCrashRun(t, {
    fx,
    tc,
    kind: 'list',
    events: EVENTS,
    aggregates: AGGREGATES,
    destinations: 6,
    batchSize: 200,
  });
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
