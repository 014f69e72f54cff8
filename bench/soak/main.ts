import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { parseDuration } from '../../src/config/duration.js';
import { storeInOutbox } from '../../src/outbox/writer.js';
import { type RelayProcess, spawnRelay, writeConfigFile } from '../../test/helpers/relay-process.js';
import { type RedisServer, startRedisServer } from '../../test/helpers/services.js';
import { createBenchDatabase } from '../lib/services.js';
import { sleep } from '../lib/stats.js';
import { verify } from './verify.js';

/**
 * `npm run soak -- [--duration 3m] [--rate 300]`: producers write events (a tenth in transactions that roll back)
 * while 3 relay daemons and 2 idempotent consumers run, and a fault injector SIGKILLs relays and consumers, restarts
 * the soak's own Redis (AOF, appendfsync always: an outage, not data loss), terminates every Postgres connection of the
 * soak database and makes a destination list WRONGTYPE for a moment. Then it lets everything drain and checks the
 * data: every committed event has exactly one effect row, no rolled-back event shows up, per-aggregate order held.
 * Exits 1 on any loss, duplicate or reordering.
 */
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    duration: { type: 'string', default: process.env.SOAK_DURATION ?? '3m' },
    rate: { type: 'string', default: process.env.SOAK_RATE ?? '300' },
    aggregates: { type: 'string', default: '200' },
  },
});
const durationMs = parseDuration(values.duration);
if (durationMs === undefined || durationMs < 5000)
  throw new Error(`--duration: expected e.g. 60s or 3m, got ${values.duration}`);
const rate = Number(values.rate);
const aggregates = Number(values.aggregates);
const RELAYS = 3;
const CONSUMERS = 2;
const PRODUCERS = 4;
const CONSUMER = new URL('./consumer.ts', import.meta.url).pathname;
const queueOf = (aggregate: number) => `soak:q${aggregate % CONSUMERS}`;
const log = (m: string) => console.log(`[soak ${((performance.now() - t0) / 1000).toFixed(1)}s] ${m}`);
const t0 = performance.now();

const redisServer: RedisServer = await startRedisServer({ persistent: true });
const db = await createBenchDatabase('soak', 4);
await db.pool.query(`
  CREATE TABLE soak_committed (event_id uuid PRIMARY KEY, aggregate_id text NOT NULL, n integer NOT NULL);
  CREATE INDEX ON soak_committed (aggregate_id, n);
  -- No unique constraint: a second effect of one event must show up as a second row, not as an error.
  CREATE TABLE soak_effects (id bigserial PRIMARY KEY, event_id uuid NOT NULL, aggregate_id text NOT NULL,
                             n integer NOT NULL, consumer text NOT NULL, applied_at timestamptz DEFAULT clock_timestamp());`);
const relayConfig = writeConfigFile('soak', {
  database: { url: db.url },
  redis: { url: redisServer.url },
  outbox: {
    batch_size: 50,
    poll_interval: '200ms',
    // Publish errors are injected on purpose: keep retrying (quickly) instead of marking events failed.
    max_retries: 100_000,
    retry_backoff: { initial_delay: '50ms', max_delay: '1s' },
    publish_timeout: '2s',
    claim_timeout: '10s',
    dedup_window: '1h',
  },
});

const faults = {
  'relay SIGKILL': 0,
  'consumer SIGKILL': 0,
  'redis restart': 0,
  'postgres connections terminated': 0,
  'publish error (WRONGTYPE list)': 0,
} satisfies Record<string, number>;
const relays: RelayProcess[] = Array.from({ length: RELAYS }, () => spawnRelay(relayConfig));
const consumers: ChildProcess[] = Array.from({ length: CONSUMERS }, (_, j) => spawnConsumer(j));

function spawnConsumer(j: number): ChildProcess {
  const args = {
    databaseUrl: db.url,
    redisUrl: redisServer.url,
    source: `soak:q${j}`,
    processing: `soak:q${j}:processing`,
    name: `consumer-${j}`,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', CONSUMER, JSON.stringify(args)], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'silent' },
  });
  return child;
}

async function killAndRestart(child: ChildProcess, restart: () => void): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
  restart();
}

// --- producers -------------------------------------------------------------------------------------------------
const rolledBack = new Set<string>();
let producing = true;
let committedTx = 0;
let rolledBackTx = 0;
let producerErrors = 0;

async function producer(p: number): Promise<void> {
  const mine = Array.from({ length: aggregates }, (_, a) => a).filter((a) => a % PRODUCERS === p);
  const txPerSecond = rate / PRODUCERS / 2.5;
  let client: pg.Client | undefined;
  while (producing) {
    const started = performance.now();
    try {
      if (!client) {
        client = new pg.Client({ connectionString: db.url });
        client.on('error', () => {});
        await client.connect();
      }
      const aggregate = mine[Math.floor(Math.random() * mine.length)] as number;
      const count = 1 + Math.floor(Math.random() * 4);
      const rollback = Math.random() < 0.1;
      await client.query('BEGIN');
      // One producer owns each aggregate and writes it sequentially, so "the next n" is the committed maximum + 1,
      // read afresh in every transaction (a COMMIT cut off by a terminated connection may or may not have landed).
      const { rows } = await client.query<{ next: number }>(
        'SELECT coalesce(max(n) + 1, 0) AS next FROM soak_committed WHERE aggregate_id = $1',
        [`agg-${aggregate}`],
      );
      const first = rows[0]?.next ?? 0;
      const events = Array.from({ length: count }, (_, k) => ({
        id: randomUUID(),
        aggregateType: 'soak',
        aggregateId: `agg-${aggregate}`,
        eventType: 'soak.tick',
        queue: queueOf(aggregate),
        payload: { n: first + k },
      }));
      await client.query(
        'INSERT INTO soak_committed (event_id, aggregate_id, n) SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[])',
        [events.map((e) => e.id), events.map((e) => e.aggregateId), events.map((e) => e.payload.n)],
      );
      await storeInOutbox(client, events);
      if (rollback) {
        for (const e of events) rolledBack.add(e.id);
        await client.query('ROLLBACK');
        rolledBackTx++;
      } else {
        await client.query('COMMIT');
        committedTx++;
      }
    } catch {
      producerErrors++;
      client?.end().catch(() => {});
      client = undefined;
      await sleep(50);
    }
    await sleep(Math.max(0, 1000 / txPerSecond - (performance.now() - started)));
  }
  await client?.end().catch(() => {});
}

// --- fault injector ----------------------------------------------------------------------------------------------
let injecting = true;
const poisonLua = `if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], 'not a list', 'PX', ARGV[1]) return 1 end return 0`;

async function injector(): Promise<void> {
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  redis.on('error', () => {});
  try {
    while (injecting) {
      await sleep(500 + Math.random() * 1500);
      if (!injecting) break;
      const kind = Math.floor(Math.random() * 5);
      try {
        if (kind === 0) {
          const i = Math.floor(Math.random() * RELAYS);
          await killAndRestart((relays[i] as RelayProcess).child, () => {
            relays[i] = spawnRelay(relayConfig);
          });
          faults['relay SIGKILL']++;
        } else if (kind === 1) {
          const j = Math.floor(Math.random() * CONSUMERS);
          await killAndRestart(consumers[j] as ChildProcess, () => {
            consumers[j] = spawnConsumer(j);
          });
          faults['consumer SIGKILL']++;
        } else if (kind === 2) {
          await redisServer.kill();
          await sleep(300 + Math.random() * 700);
          await redisServer.start();
          faults['redis restart']++;
        } else if (kind === 3) {
          const { rowCount } = await admin.query(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
          );
          if ((rowCount ?? 0) > 0) faults['postgres connections terminated']++;
        } else {
          // Only an empty list is replaced, so no job is ever destroyed; the key expires by itself.
          const list = `soak:q${Math.floor(Math.random() * CONSUMERS)}`;
          for (let attempt = 0; attempt < 400 && injecting; attempt++) {
            if ((await redis.eval(poisonLua, 1, list, 300 + Math.floor(Math.random() * 700))) === 1) {
              faults['publish error (WRONGTYPE list)']++;
              break;
            }
            await sleep(5);
          }
        }
      } catch (err) {
        log(`fault injection failed (carrying on): ${(err as Error).message}`);
      }
    }
  } finally {
    redis.disconnect();
    await admin.end().catch(() => {});
  }
}

// --- run ---------------------------------------------------------------------------------------------------------
log(
  `running ${values.duration}: ${PRODUCERS} producers at ~${rate} events/s, ${RELAYS} relays, ${CONSUMERS} consumers`,
);
const producers = Array.from({ length: PRODUCERS }, (_, p) => producer(p));
const faulting = injector();
await sleep(durationMs);
injecting = false;
producing = false;
await Promise.all([...producers, faulting]);
log(`producing stopped: ${committedTx} transactions committed, ${rolledBackTx} rolled back, ${producerErrors} failed`);

let exitCode = 1;
try {
  // Everything must be running for the drain (a restart may have been cut short by the end of the run).
  relays.forEach((r, i) => {
    if (r.child.exitCode !== null || r.child.signalCode !== null) relays[i] = spawnRelay(relayConfig);
  });
  consumers.forEach((c, j) => {
    if (c.exitCode !== null || c.signalCode !== null) consumers[j] = spawnConsumer(j);
  });
  const count = async () =>
    (
      await db.pool.query<{ committed: number; applied: number }>(
        `SELECT (SELECT count(*)::int FROM soak_committed) AS committed,
                (SELECT count(DISTINCT event_id)::int FROM soak_effects) AS applied`,
      )
    ).rows[0] as { committed: number; applied: number };
  const deadline = Date.now() + 120_000;
  let c = await count();
  let lastReport = Date.now();
  while (c.applied < c.committed && Date.now() < deadline) {
    await sleep(250);
    c = await count();
    if (Date.now() - lastReport > 5000) {
      lastReport = Date.now();
      log(`draining: ${c.applied} of ${c.committed} applied`);
    }
  }
  log(`drained: ${c.applied} of ${c.committed} committed events applied`);
  await sleep(1000); // a late duplicate, if there were one, has time to land and be counted
  const result = await verify(db.pool, rolledBack);
  console.log('\nfaults injected:');
  for (const [kind, n] of Object.entries(faults)) console.log(`  ${kind.padEnd(34)} ${n}`);
  console.log(
    `events checked: ${result.committed} committed (${committedTx} transactions), ${rolledBack.size} rolled back`,
  );
  console.log(`rolled-back events seen: ${result.phantoms}; outbox rows failed: ${result.failed}`);
  console.log(`lost ${result.lost}, duplicated ${result.duplicated}, reordered ${result.reordered}`);
  const faultsTotal = Object.values(faults).reduce((a, b) => a + b, 0);
  exitCode = result.ok && faultsTotal > 0 && result.committed > 0 ? 0 : 1;
} finally {
  for (const r of relays) r.child.kill('SIGKILL');
  for (const c of consumers) c.kill('SIGKILL');
  await Promise.all([
    ...relays.map((r) => r.exited),
    ...consumers.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)),
  ]);
  await redisServer.kill();
  await db.close();
}
process.exit(exitCode);
