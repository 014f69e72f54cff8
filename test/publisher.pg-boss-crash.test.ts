import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import type { NewOutboxEvent } from '../src/outbox/types.js';
import { storeInOutbox } from '../src/outbox/writer.js';
import { exitWithin, type RelayProcess, spawnRelay, writeConfigFile } from './helpers/relay-process.js';
import { createTestDatabase, REDIS_URL, type TestDatabase, waitFor } from './helpers/services.js';

// pg-boss destination (issue 12), G1/G2/G3: the job and the row's `published` mark are one transaction, so SIGKILLs
// at any point leave each event in pg-boss exactly once, without dedup markers, created in per-aggregate order.
const EVENTS = 20_000;
const AGGREGATES = 200;
const RELAYS = 2;
const CHUNK = 2000;
/** Kills to land while events are pending, of which some between a relay's inserts and its COMMIT. */
const KILLS = 5;
const CRASHES_BEFORE_COMMIT = 2;
const QUEUE = 'events.low';

let db: TestDatabase;
// biome-ignore lint/suspicious/noExplicitAny: the outbox table only
let kysely: Kysely<any>;
before(async () => {
  db = await createTestDatabase('pgboss_crash');
  kysely = new Kysely({ dialect: new PostgresDialect({ pool: db.pool }) });
});
after(async () => {
  await db.close();
});

const count = async (sql: string): Promise<number> => (await db.pool.query(sql)).rows[0].n;

/** Chunk `c` of the events, one producer transaction; write order per aggregate is n = 0, 1, 2, ... */
async function writeChunk(c: number): Promise<void> {
  const events: NewOutboxEvent[] = [];
  for (let i = c * CHUNK; i < (c + 1) * CHUNK; i++) {
    events.push({ aggregateType: 'acct', aggregateId: `a${i % AGGREGATES}`, eventType: 'tick', payload: { n: i } });
  }
  await kysely.transaction().execute((trx) => storeInOutbox(trx, events));
}

test(`${RELAYS} relays SIGKILLed at random while moving ${EVENTS} events into pg-boss: each job once, in aggregate order`, async (t) => {
  const configFile = writeConfigFile('pgboss-crash', {
    database: { url: db.url },
    redis: { url: REDIS_URL },
    outbox: {
      publisher: 'pg-boss',
      // Both relays race to install pg-boss's schema and to create the queue on their first batch.
      pg_boss: { queue: 'events.{priority}', create_queues: true },
      batch_size: 50,
      poll_interval: '200ms',
    },
  });
  const pending = () => count("SELECT count(*)::int AS n FROM exactly_once_outbox WHERE status <> 'published'");

  // `relay started` is an info line: each relay logs at info so the killer can tell a started relay from one still
  // loading (on a busy CI machine that takes seconds, and killing it then would test nothing). Half the replacements
  // carry the test fault that SIGKILLs the relay after its jobs are inserted and before its COMMIT, the window a
  // random kill hits only by luck.
  const faulty = new Set<RelayProcess>();
  const spawn = (fault: boolean) => {
    const env: Record<string, string> = { LOG_LEVEL: 'info' };
    if (fault) env.EXACTLY_ONCE_TEST_FAULT = `kill-after-push:${1 + Math.floor(Math.random() * 3)}`;
    const relay = spawnRelay(configFile, [], env);
    if (fault) faulty.add(relay);
    return relay;
  };
  const dead = (r: RelayProcess) => r.child.exitCode !== null || r.child.signalCode !== null;

  // The producer writes while relays die: two chunks first, one more after each kill, the rest once enough kills
  // have landed. So kills land mid-drain however fast or slow the machine is.
  let written = 0;
  let writing = Promise.resolve();
  const writeUpTo = (chunks: number) => {
    // One producer transaction after the other, so chunk order is write order.
    writing = writing.then(async () => {
      while (written < Math.min(chunks, EVENTS / CHUNK)) await writeChunk(written++);
    });
    return writing;
  };
  await writeUpTo(2);

  const relays: RelayProcess[] = Array.from({ length: RELAYS }, () => spawn(false));
  let kills = 0;
  let killsWhileDraining = 0;
  let crashesBeforeCommit = 0;
  let stopKilling = false;
  let stop = () => {};
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  // One killer per relay slot, so the slots restart in parallel: on a busy machine a relay takes seconds to load.
  const killSlot = async (i: number) => {
    while (!stopKilling) {
      const victim = relays[i] as RelayProcess;
      await waitFor(() => stopKilling || dead(victim) || victim.stderr().includes('relay started'), 120_000, 'a start');
      // Anywhere from its first claim (pg-boss still starting) to deep into the drain; one with the fault is left to
      // reach it (its 1st to 3rd batch).
      let timer: NodeJS.Timeout | undefined;
      const wait = faulty.has(victim) ? 60_000 : 200 + Math.random() * 1500;
      await Promise.race([new Promise((r) => (timer = setTimeout(r, wait))), victim.exited, stopped]);
      clearTimeout(timer);
      if (stopKilling) break;
      if (victim.stderr().includes('test fault: SIGKILL after the push')) crashesBeforeCommit++;
      else victim.child.kill('SIGKILL');
      await exitWithin(victim, 10_000);
      kills++;
      if ((await pending()) > 0) killsWhileDraining++;
      relays[i] = spawn(Math.random() < 0.5);
      await writeUpTo(2 + kills);
    }
  };
  const killer = Promise.all(relays.map((_, i) => killSlot(i)));

  try {
    await waitFor(
      () => (killsWhileDraining >= KILLS && crashesBeforeCommit >= CRASHES_BEFORE_COMMIT) || kills >= 40,
      240_000,
      'enough kills',
    ).catch((err: Error) => {
      throw new Error(
        `${err.message} (${kills} kills, ${killsWhileDraining} mid-drain, ${crashesBeforeCommit} before COMMIT)`,
      );
    });
    stopKilling = true;
    stop();
    await killer;
    await writeUpTo(EVENTS / CHUNK);
    // Relays without the fault finish the drain.
    for (const [i, r] of relays.entries()) {
      if (!faulty.has(r) && !dead(r)) continue;
      r.child.kill('SIGKILL');
      await exitWithin(r, 10_000);
      relays[i] = spawn(false);
    }
    await waitFor(async () => (await pending()) === 0, 120_000, 'every event published');
  } finally {
    stopKilling = true;
    stop();
    await killer;
    for (const r of relays) r.child.kill('SIGKILL');
    await Promise.all(relays.map((r) => exitWithin(r, 10_000)));
  }

  // Counted in pg-boss's own table, by event id: every event is a job, none twice.
  const twice = await count(
    'SELECT count(*)::int AS n FROM (SELECT id FROM pgboss.job GROUP BY id HAVING count(*) > 1) d',
  );
  assert.equal(twice, 0, 'no event became two jobs');
  const jobs = await db.pool.query<{ seq: string; aggregate_id: string; created_on: Date; tx: string; data: unknown }>(
    `SELECT o.seq, o.aggregate_id, j.created_on, j.xmin::text AS tx, j.data
       FROM pgboss.job j JOIN exactly_once_outbox o ON o.id = j.id
      WHERE j.name = $1
      ORDER BY o.seq`,
    [QUEUE],
  );
  assert.equal(jobs.rows.length, EVENTS, 'every event is a job in the queue');
  assert.equal(await count('SELECT count(*)::int AS n FROM pgboss.job'), EVENTS, 'and nothing else is');

  // Per aggregate, in outbox order: each job created no earlier than the one before, and each relay transaction
  // (one xmin) holds a contiguous run of the aggregate's events, so no batch slipped in between another's.
  const last = new Map<string, { at: number; tx: string; txs: Set<string> }>();
  let reordered = 0;
  for (const j of jobs.rows) {
    const prev = last.get(j.aggregate_id);
    const at = j.created_on.getTime();
    if (!prev) {
      last.set(j.aggregate_id, { at, tx: j.tx, txs: new Set([j.tx]) });
      continue;
    }
    if (at < prev.at || (j.tx !== prev.tx && prev.txs.has(j.tx))) reordered++;
    prev.at = at;
    prev.tx = j.tx;
    prev.txs.add(j.tx);
  }
  assert.equal(reordered, 0, 'jobs created in per-aggregate order');
  const first = jobs.rows[0]?.data as Record<string, unknown>;
  assert.equal(first.event_type, 'tick', "the job's data is the list publisher's job JSON");
  assert.equal(first.aggregate_id, 'a0');
  assert.equal(
    await count('SELECT count(*)::int AS n FROM exactly_once_outbox WHERE retry_count > 0'),
    0,
    'crashes and the queue-creation race are not publish failures: no retries burned',
  );
  assert.ok(killsWhileDraining >= KILLS, `only ${killsWhileDraining} kills landed while events were pending`);
  assert.ok(
    crashesBeforeCommit >= CRASHES_BEFORE_COMMIT,
    `only ${crashesBeforeCommit} relays died between their inserts and COMMIT`,
  );
  t.diagnostic(
    `survived ${kills} SIGKILLs (${killsWhileDraining} mid-drain, ${crashesBeforeCommit} between insert and COMMIT); ` +
      `${EVENTS} events, ${AGGREGATES} aggregates`,
  );
});
