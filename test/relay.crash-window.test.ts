import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import { storeInOutboxStandalone } from '../src/outbox/writer.js';
import { type OutboxFixture, outboxFixture } from './helpers/outbox-fixture.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { REDIS_URL, waitFor } from './helpers/services.js';

/**
 * G2 proven in its strongest form: with the test-only fault switch (EXACTLY_ONCE_TEST_FAULT, src/outbox/fault-injection.ts)
 * the relay process dies, or stalls, exactly between the Redis push and the COMMIT on every run, and the next relay
 * must learn from the high-water marks what was pushed and push none of it again, including in a mixed batch (some
 * events pushed, one failed, the ones behind it held back). The marks stay a fixed number of keys: one per lane and
 * destination, whatever the traffic.
 */
/** Lanes of the outbox (migrations/0008): the most marks one destination can have. */
const LANES = 16;
const EVENTS = 200;
const AGGREGATES = 10;
const BATCH = 20;
/** Small but realistic: long enough for the next relay to arrive, short enough that a 1000x error shows in the TTL. */
const DEDUP_WINDOW_S = 60;

let fx: OutboxFixture;
before(async () => {
  fx = await outboxFixture('crashwin', { batch_size: BATCH });
});
after(async () => {
  await fx.close();
});
beforeEach(async () => {
  await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
  await fx.redis.del(fx.lowQueue);
  for (const key of await markKeys()) await fx.redis.del(key);
  // Event n of aggregate a is written before n+1.
  await storeInOutboxStandalone(
    fx.db.pool,
    Array.from({ length: EVENTS }, (_, i) => ({
      aggregateType: 'acct',
      aggregateId: `a${i % AGGREGATES}`,
      eventType: 'tick',
      payload: { n: Math.floor(i / AGGREGATES) },
    })),
  );
});

function configFile(label: string, outbox: Record<string, unknown> = {}): string {
  return writeConfigFile(label, {
    database: { url: fx.db.url },
    redis: { url: REDIS_URL },
    outbox: {
      queue_pattern: fx.config.outbox.queuePattern,
      batch_size: BATCH,
      poll_interval: '200ms',
      dedup_window: `${DEDUP_WINDOW_S}s`,
      // Shorter than dedup_window, as config validation requires.
      claim_timeout: '10s',
      ...outbox,
    },
  });
}

/** The JSON log lines a relay has written so far (a line still being written is left out). */
function logLines(relay: RelayProcess): { msg: string; [k: string]: unknown }[] {
  const lines = relay.stderr().split('\n');
  lines.pop();
  return lines.flatMap((l) => {
    try {
      return l.startsWith('{') ? [JSON.parse(l) as { msg: string }] : [];
    } catch {
      return []; // stderr text interleaved with a stdout line
    }
  });
}

async function rows(): Promise<Map<string, string>> {
  const { rows } = await fx.db.pool.query<{ id: string; status: string }>('SELECT id, status FROM exactly_once_outbox');
  return new Map(rows.map((r) => [r.id, r.status]));
}

async function pending(): Promise<number> {
  const { rows } = await fx.db.pool.query(
    "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status <> 'published'",
  );
  return rows[0].n;
}

/** Every high-water mark under this file's prefix (`{<list>}:eo:hwm:<outbox id>:<lane>`). */
async function markKeys(): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await fx.redis.scan(cursor, 'MATCH', `{${fx.prefix}*:eo:hwm:*`, 'COUNT', 1000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}

/**
 * The pushed jobs whose events are still pending: the crash window's leftovers. Checks the marks: at most one per
 * lane for this one list, each living `dedup_window` (a unit error, ms vs s, is off by 1000x).
 */
async function inTheWindow(): Promise<string[]> {
  const status = await rows();
  const pushed = (await fx.jobs()).map((j) => j.id as string);
  const stranded = pushed.filter((id) => status.get(id) === 'pending');
  const marks = await markKeys();
  assert.ok(marks.length > 0 && marks.length <= LANES, `${marks.length} marks for one list`);
  for (const key of marks) {
    const ttl = await fx.redis.pttl(key);
    assert.ok(
      ttl > (DEDUP_WINDOW_S - 20) * 1000 && ttl <= DEDUP_WINDOW_S * 1000,
      `mark ${key} lives ${ttl} ms; dedup_window is ${DEDUP_WINDOW_S}s`,
    );
  }
  return stranded;
}

/** Every event once, and per aggregate in write order (as a right-popping worker sees them). */
async function assertExactlyOnceInOrder(): Promise<void> {
  const jobs = await fx.jobs();
  const ids = jobs.map((j) => j.id as string);
  assert.equal(new Set(ids).size, ids.length, 'no event pushed twice');
  assert.equal(ids.length, EVENTS, 'every event pushed');
  const next = new Map<string, number>();
  for (const j of jobs) {
    const agg = j.aggregate_id as string;
    const n = (j.payload as { n: number }).n;
    assert.equal(n, next.get(agg) ?? 0, `aggregate ${agg} out of order`);
    next.set(agg, n + 1);
  }
  const retried = await fx.db.pool.query('SELECT count(*)::int AS n FROM exactly_once_outbox WHERE retry_count > 0');
  assert.equal(retried.rows[0].n, 0, 'a crash is not a publish failure: no retries burned');
  // Dedup state is bounded by lanes x destinations, never by the events that went through.
  assert.ok((await markKeys()).length <= LANES, 'at most one mark per lane for the one list');
}

async function scrapeDuplicates(relay: RelayProcess): Promise<number> {
  const listening = logLines(relay).find((l) => typeof l.url === 'string' && /listening/.test(l.msg));
  assert.ok(listening, `the relay logged its admin URL; output:\n${relay.stderr()}`);
  const text = await (await fetch(`${listening.url as string}/metrics`)).text();
  const m = /^exactly_once_outbox_duplicates_total(?:\{[^}]*\})? (\d+)$/m.exec(text);
  assert.ok(m, 'exactly_once_outbox_duplicates_total is exported');
  return Number(m[1]);
}

test('SIGKILL between the Redis push and the COMMIT: the next relay finds the marks and pushes nothing twice', async () => {
  const file = configFile('crashwin-kill');
  // Two batches go through normally; the third is pushed and the process kills itself before marking it.
  const victim = spawnRelay(file, [], { EXACTLY_ONCE_TEST_FAULT: 'kill-after-push:3' });
  const { signal } = await exitWithin(victim, 60_000);
  assert.equal(signal, 'SIGKILL', `died by SIGKILL; output:\n${victim.stderr()}`);
  assert.match(victim.stderr(), /test fault: SIGKILL after the push, before COMMIT/);

  assert.equal(await fx.redis.llen(fx.lowQueue), 3 * BATCH, 'three batches pushed');
  const stranded = await inTheWindow();
  assert.equal(stranded.length, BATCH, 'the third batch is in Redis while its rows are still pending');
  assert.equal(await pending(), EVENTS - 2 * BATCH);

  const next = spawnRelay(file, [], { LOG_LEVEL: 'info' });
  try {
    await waitFor(async () => (await pending()) === 0, 60_000, 'the next relay to publish the rest');
    assert.equal(await scrapeDuplicates(next), BATCH, 'exactly_once_outbox_duplicates_total on /metrics');
  } finally {
    next.child.kill('SIGTERM');
    await exitWithin(next, 20_000);
  }
  const found = logLines(next)
    .filter((l) => /already written/.test(l.msg))
    .reduce((sum, l) => sum + Number(l.duplicates), 0);
  assert.equal(found, BATCH, 'the next relay logged the duplicates it found');
  await assertExactlyOnceInOrder();
});

test('a relay that stalls between push and COMMIT loses its claim after claim_timeout; nothing is pushed twice', async () => {
  const file = configFile('crashwin-stall', { claim_timeout: '2s', publish_timeout: '1s' });
  const stalled = spawnRelay(file, [], { EXACTLY_ONCE_TEST_FAULT: 'stall-after-push:2', LOG_LEVEL: 'info' });
  let next: RelayProcess | undefined;
  try {
    await waitFor(() => /test fault: stalling after the push/.test(stalled.stderr()), 60_000, 'the stall');
    assert.equal(await fx.redis.llen(fx.lowQueue), 2 * BATCH);
    assert.equal((await inTheWindow()).length, BATCH, 'the second batch is pushed and uncommitted');
    const stalledAt = performance.now();

    next = spawnRelay(file, [], { LOG_LEVEL: 'info' });
    const other = next;
    await waitFor(async () => (await pending()) === 0, 60_000, 'the other relay to publish everything');
    // The stalled batch's aggregates were locked until Postgres ended the idle transaction.
    assert.ok(performance.now() - stalledAt >= 2000, 'released by claim_timeout, not earlier');
    await waitFor(() => logLines(other).some((l) => /already written/.test(l.msg)), 10_000, 'the duplicates log line');
    const found = logLines(other)
      .filter((l) => /already written/.test(l.msg))
      .reduce((sum, l) => sum + Number(l.duplicates), 0);
    assert.equal(found, BATCH, 'the other relay found the stalled batch in Redis');
  } finally {
    stalled.child.kill('SIGKILL');
    await exitWithin(stalled, 10_000);
    if (next) {
      next.child.kill('SIGTERM');
      await exitWithin(next, 20_000);
    }
  }
  await assertExactlyOnceInOrder();
});

test('an unknown EXACTLY_ONCE_TEST_FAULT value stops the relay at start, naming the variable', async () => {
  const relay = spawnRelay(configFile('crashwin-bad'), [], { EXACTLY_ONCE_TEST_FAULT: 'kill-sometimes' });
  const { code } = await exitWithin(relay, 30_000);
  assert.equal(code, 1);
  assert.match(relay.stderr(), /EXACTLY_ONCE_TEST_FAULT: unknown test fault "kill-sometimes"/);
  assert.equal(await fx.redis.llen(fx.lowQueue), 0, 'nothing published');
});

test('a mixed batch (pushed, failed, held) killed before its COMMIT: the re-run reaches the same outcomes', async () => {
  // Replace the 200 events: one aggregate whose first event's list is a string (WRONGTYPE), with two events behind
  // it, among healthy aggregates, all in one batch.
  await fx.db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
  const broken = `${fx.prefix}mixed-not-a-list`;
  await fx.redis.set(broken, 'occupied');
  const written = await storeInOutboxStandalone(
    fx.db.pool,
    [
      { aggregateId: 'ok-1', eventType: 'e', payload: { n: 0 } },
      { aggregateId: 'sick', eventType: 'e', payload: { n: 0 }, queue: broken },
      { aggregateId: 'ok-2', eventType: 'e', payload: { n: 0 } },
      { aggregateId: 'sick', eventType: 'e', payload: { n: 1 } },
      { aggregateId: 'ok-1', eventType: 'e', payload: { n: 1 } },
      { aggregateId: 'sick', eventType: 'e', payload: { n: 2 } },
    ],
    { ...fx.config.outbox },
  );
  const id = (agg: string, n: number) =>
    written.find((e) => e.aggregateId === agg && (e.payload as { n: number }).n === n)?.id as string;
  const file = configFile('crashwin-mixed', {
    allowed_queues: [`${fx.prefix}*`],
    retry_backoff: { initial_delay: '300ms', max_delay: '300ms', jitter: false },
  });
  const victim = spawnRelay(file, [], { EXACTLY_ONCE_TEST_FAULT: 'kill-after-push:1' });
  const { signal } = await exitWithin(victim, 60_000);
  assert.equal(signal, 'SIGKILL', victim.stderr());
  // The first attempt pushed the healthy events; the failed one and the two behind it were not pushed.
  const pushedFirst = new Set((await fx.jobs()).map((j) => j.id as string));
  assert.deepEqual(pushedFirst, new Set([id('ok-1', 0), id('ok-2', 0), id('ok-1', 1)]));
  assert.equal(await pending(), 6, 'nothing committed');

  // The re-run: the healthy events are recognised as written; the failed one fails again (retry scheduled), the ones
  // behind it wait; none of the failed aggregate's events counts as written.
  const next = spawnRelay(file, [], { LOG_LEVEL: 'info' });
  try {
    await waitFor(
      async () => (await rows()).get(id('ok-1', 1)) === 'published' && (await rows()).get(id('sick', 0)) === 'pending',
      30_000,
      `the re-run to commit (${next.stderr().slice(-300)})`,
    );
    await waitFor(() => logLines(next).some((l) => /already written/.test(l.msg)), 10_000, 'the duplicates log line');
    const jobs = (await fx.jobs()).map((j) => j.id as string);
    assert.equal(jobs.length, 3, 'nothing pushed twice, nothing of the failed aggregate pushed');
    const { rows: sick } = await fx.db.pool.query<{ retry_count: number }>(
      'SELECT retry_count FROM exactly_once_outbox WHERE id = $1',
      [id('sick', 0)],
    );
    assert.ok((sick[0]?.retry_count ?? 0) >= 1, 'the failed event counts its failure');
    // The destination is repaired: the failed aggregate goes out, once, in order.
    await fx.redis.del(broken);
    await waitFor(async () => (await pending()) === 0, 30_000, 'the failed aggregate to go out');
  } finally {
    next.child.kill('SIGTERM');
    await exitWithin(next, 20_000);
  }
  const all = (await fx.jobs()).map((j) => j.id as string);
  assert.equal(new Set(all).size, all.length, 'no event pushed twice');
  assert.deepEqual(
    (await fx.jobs(broken)).map((j) => j.id),
    [id('sick', 0)],
  );
  assert.deepEqual(
    all.filter((x) => x === id('sick', 1) || x === id('sick', 2)),
    [id('sick', 1), id('sick', 2)],
    'the events behind the failed one, in order',
  );
});
