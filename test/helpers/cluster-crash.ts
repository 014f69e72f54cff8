import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { NewOutboxEvent } from '../../src/outbox/types.js';
import { storeInOutbox } from '../../src/outbox/writer.js';
import { keySlot } from '../../src/publishers/hash-tag.js';
import type { OutboxFixture } from './outbox-fixture.js';
import type { TestCluster } from './redis-cluster.js';
import { type HttpRelay, startHttpRelay } from './relay-http.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './relay-process.js';
import { waitFor } from './services.js';

export interface ClusterCrashOptions {
  fx: OutboxFixture;
  tc: TestCluster;
  /** `outbox.publisher` of every relay, and how the destinations are read back (LRANGE or XRANGE). */
  kind: 'list' | 'stream';
  events: number;
  aggregates: number;
  /** Destination keys, spread over the cluster's masters; aggregate `n` writes to destination `n % destinations`. */
  destinations: number;
  batchSize: number;
}

/**
 * The CLI relay on a three-master cluster, configured only through `redis.cluster.nodes`, while relays die: relay A
 * crashes by itself in the crash window (after its 2nd write, before COMMIT), relay B is SIGKILLed at a third of the
 * events, one of their two replacements at two thirds, and the survivors finish. Then every destination is read back
 * as a consumer would: each event must be there once (G2) and each aggregate's events in write order (G3).
 * Shared by test/cluster.relay.test.ts (lists) and test/cluster.stream-relay.test.ts (streams).
 */
export async function clusterCrashRun(t: TestContext, o: ClusterCrashOptions): Promise<void> {
  const { fx, tc } = o;
  const keyOf = (agg: number) => `${fx.prefix}${o.kind}:${agg % o.destinations}`;
  const masters = new Set(
    Array.from({ length: o.destinations }, (_, n) => {
      const node = tc.client.slots[keySlot(keyOf(n))]?.[0];
      assert.ok(node, `a master for ${keyOf(n)}`);
      return node;
    }),
  );
  assert.ok(masters.size >= 2, `the destinations spread over ${masters.size} master(s); pick other names`);

  for (let start = 0; start < o.events; start += 1000) {
    const events: NewOutboxEvent[] = [];
    for (let i = start; i < Math.min(o.events, start + 1000); i++) {
      const agg = i % o.aggregates;
      events.push({
        aggregateType: 'acct',
        aggregateId: `a${agg}`,
        eventType: 'tick',
        payload: { n: Math.floor(i / o.aggregates) },
        queue: keyOf(agg),
      });
    }
    await fx.kysely.transaction().execute((trx) => storeInOutbox(trx, events, fx.config.outbox));
  }

  const configFile = writeConfigFile(`cluster-${o.kind}`, {
    database: { url: fx.db.url },
    redis: { cluster: { nodes: tc.ports.map((p) => `redis://127.0.0.1:${p}`) } },
    outbox: {
      publisher: o.kind,
      queue_pattern: fx.config.outbox.queuePattern,
      allowed_queues: [`${fx.prefix}*`],
      batch_size: o.batchSize,
      poll_interval: '200ms',
    },
  });
  const published = async () =>
    (await fx.db.pool.query("SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status = 'published'")).rows[0]
      .n as number;
  const killAfter = async (relay: RelayProcess, share: number) => {
    await waitFor(async () => (await published()) >= o.events * share, 90_000, `${share} of the events published`);
    relay.child.kill('SIGKILL');
    await exitWithin(relay, 10_000);
    const at = await published();
    assert.ok(at < o.events, 'the relay was killed while events were still pending');
    return at;
  };

  const relays: RelayProcess[] = [];
  let admin: HttpRelay | undefined;
  try {
    // A alone first: started beside B, it could find the outbox already drained by B on a quick machine and never
    // reach its second push.
    const a = spawnRelay(configFile, [], { EXACTLY_ONCE_TEST_FAULT: 'kill-after-push:2' });
    relays.push(a);
    assert.equal(
      (await exitWithin(a, 60_000)).signal,
      'SIGKILL',
      `relay A should crash after its push:\n${a.stderr()}`,
    );
    const b = spawnRelay(configFile);
    relays.push(b);
    const first = await killAfter(b, 1 / 3);
    // The replacements: one serves the admin API too, whose readiness and stats must work against the cluster.
    admin = await startHttpRelay(configFile);
    const c = spawnRelay(configFile);
    relays.push(admin, c);
    const second = await killAfter(c, 2 / 3);
    relays.push(spawnRelay(configFile));
    await waitFor(async () => (await published()) === o.events, 90_000, 'every event published');
    const ready = await admin.get('/readyz');
    assert.equal(ready.status, 200, ready.text);
    const stats = await admin.get('/api/v1/exactly-once/stats?queue=cluster-q');
    assert.equal(stats.status, 200, stats.text);
    t.diagnostic(`relays SIGKILLed with ${first} and ${second} of ${o.events} published`);
  } finally {
    for (const r of relays) r.child.kill('SIGKILL');
    await Promise.all(relays.map((r) => exitWithin(r, 10_000)));
  }

  const got: { id: string; aggregate: string; n: number }[] = [];
  for (let d = 0; d < o.destinations; d++) got.push(...(await readBack(tc, o.kind, keyOf(d))));
  const counts = new Map<string, number>();
  for (const e of got) counts.set(e.id, (counts.get(e.id) ?? 0) + 1);
  assert.equal([...counts.values()].filter((c) => c > 1).length, 0, 'no event written twice');
  assert.equal(counts.size, o.events, 'every event written');
  assert.equal(got.length, o.events);
  const next = new Map<string, number>();
  let reordered = 0;
  for (const e of got) {
    if (e.n !== (next.get(e.aggregate) ?? 0)) reordered++;
    next.set(e.aggregate, e.n + 1);
  }
  assert.equal(reordered, 0, 'per-aggregate order held');
}

/** A destination's events in the order a consumer sees them: a list popped from the right, a stream by XRANGE. */
async function readBack(
  tc: TestCluster,
  kind: 'list' | 'stream',
  key: string,
): Promise<{ id: string; aggregate: string; n: number }[]> {
  if (kind === 'list') {
    return (await tc.client.lrange(key, 0, -1)).reverse().map((raw) => {
      const job = JSON.parse(raw) as { id: string; aggregate_id: string; payload: { n: number } };
      return { id: job.id, aggregate: job.aggregate_id, n: job.payload.n };
    });
  }
  return (await tc.client.xrange(key, '-', '+')).map(([, flat]) => {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i] as string] = flat[i + 1] as string;
    return {
      id: f.id as string,
      aggregate: f.aggregate_id as string,
      n: (JSON.parse(f.payload as string) as { n: number }).n,
    };
  });
}
