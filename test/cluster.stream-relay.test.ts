import { after, before, test } from 'node:test';
import { clusterCrashRun } from './helpers/cluster-crash.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { startTestCluster, type TestCluster } from './helpers/redis-cluster.js';

// The CLI relay against a test-owned three-master Redis Cluster, configured only through `redis.cluster.nodes` in its
// YAML, publishing to Redis Streams on several slots (`outbox.publisher: stream`, read back with XRANGE): G2 (each
// event once) and G3 (order per aggregate) must hold across slots and across relays' SIGKILLs
// (test/helpers/cluster-crash.ts; test/cluster.relay.test.ts runs the same with lists). The cluster dies with this
// file, so its keys need no cleanup; the database is dropped by the fixture.
const EVENTS = 20_000;
const AGGREGATES = 200;

let tc: TestCluster;
let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('cluster_stream');
  tc = await startTestCluster();
});
after(async () => {
  await tc?.close();
  await fx?.close();
});

test(`the CLI relay on a 3-master cluster, relays SIGKILLed and restarted: ${EVENTS} events to streams each once, in aggregate order`, async (t) => {
  await clusterCrashRun(t, {
    fx,
    tc,
    kind: 'stream',
    events: EVENTS,
    aggregates: AGGREGATES,
    destinations: 6,
    batchSize: 200,
  });
});
