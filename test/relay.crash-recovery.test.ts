import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { REDIS_URL, waitFor } from './helpers/services.js';

const EVENTS = 20_000;
const AGGREGATES = 200;
const RELAYS = 3;

let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('crash', { batch_size: 50 });
});
after(async () => {
  await fx.close();
});

// G1, G2, G3: relays SIGKILLed while draining lose no event, push none twice, and keep each aggregate in order.
test(`${RELAYS} relays SIGKILLed at random while draining ${EVENTS} events: each arrives once, in aggregate order`, async (t) => {
  // Write order per aggregate: event n of aggregate a is written before n+1 (several transactions, as apps do).
  const perTx = 2000;
  for (let start = 0; start < EVENTS; start += perTx) {
    const events: NewOutboxEvent[] = [];
    for (let i = start; i < start + perTx; i++) {
      const agg = i % AGGREGATES;
      events.push({
        aggregateType: 'acct',
        aggregateId: `a${agg}`,
        eventType: 'tick',
        payload: { n: Math.floor(i / AGGREGATES) },
      });
    }
    await fx.kysely.transaction().execute((trx) => storeInOutbox(trx, events));
  }

  const configFile = writeConfigFile('crash', {
    database: { url: fx.db.url },
    redis: { url: REDIS_URL },
    outbox: { queue_pattern: fx.config.outbox.queuePattern, batch_size: 50, poll_interval: '200ms' },
  });
  const pending = async () =>
    (await fx.db.pool.query("SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status <> 'published'")).rows[0]
      .n;
  const relays: (RelayProcess | undefined)[] = Array.from({ length: RELAYS }, () => spawnRelay(configFile));
  let kills = 0;
  let killsWhileDraining = 0;
  let stopKilling = false;
  const killer = (async () => {
    while (!stopKilling) {
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 450));
      if (stopKilling) break;
      const i = Math.floor(Math.random() * RELAYS);
      const victim = relays[i];
      if (!victim || victim.child.exitCode !== null) continue;
      victim.child.kill('SIGKILL');
      await exitWithin(victim, 10_000);
      kills++;
      if ((await pending()) > 0) killsWhileDraining++;
      relays[i] = spawnRelay(configFile);
    }
  })();

  try {
    // Keep killing until 12 kills have landed mid-drain, then let the survivors finish.
    await waitFor(async () => killsWhileDraining >= 12 || (await pending()) === 0, 120_000, 'enough kills');
    stopKilling = true;
    await killer;
    await waitFor(async () => (await pending()) === 0, 120_000, 'every event published');
  } finally {
    stopKilling = true;
    await killer;
    for (const r of relays) r?.child.kill('SIGKILL');
    await Promise.all(relays.map((r) => r && exitWithin(r, 10_000)));
  }

  const jobs = await fx.jobs();
  const counts = new Map<string, number>();
  for (const j of jobs) counts.set(j.id as string, (counts.get(j.id as string) ?? 0) + 1);
  const duplicated = [...counts.values()].filter((c) => c > 1).length;
  assert.equal(duplicated, 0, 'no event pushed twice');
  assert.equal(counts.size, EVENTS, 'every event pushed');
  assert.equal(jobs.length, EVENTS);

  // The order a right-popping worker sees: per aggregate, n must be 0, 1, 2, ...
  const next = new Map<string, number>();
  let reordered = 0;
  for (const j of jobs) {
    const agg = j.aggregate_id as string;
    const n = (j.payload as { n: number }).n;
    if (n !== (next.get(agg) ?? 0)) reordered++;
    next.set(agg, n + 1);
  }
  assert.equal(reordered, 0, 'per-aggregate order held');
  const retried = await fx.db.pool.query('SELECT count(*)::int AS n FROM exactly_once_outbox WHERE retry_count > 0');
  assert.equal(retried.rows[0].n, 0, 'crashes are not publish failures: no retries burned');
  // Markers are deleted once their batch is committed; only a relay killed between its COMMIT and that UNLINK leaves
  // some (one batch of 50 at most per kill, the final SIGKILLs included), to expire after dedup_window. Without the cleanup all 20,000 would stay.
  let markers = 0;
  let cursor = '0';
  do {
    const [next, keys] = await fx.redis.scan(cursor, 'MATCH', `{${fx.prefix}*:eo:dedup:*`, 'COUNT', 1000);
    cursor = next;
    markers += keys.length;
  } while (cursor !== '0');
  assert.ok(markers <= (kills + RELAYS) * 50, `${markers} dedup markers left after ${kills} kills`);
  assert.ok(killsWhileDraining >= 12, `only ${killsWhileDraining} kills landed while events were pending`);
  t.diagnostic(
    `survived ${kills} SIGKILLs (${killsWhileDraining} mid-drain); ${EVENTS} events, ${AGGREGATES} aggregates, ${RELAYS} relays; ${markers} markers left`,
  );
});
