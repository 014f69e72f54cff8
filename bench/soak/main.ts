import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { stringify } from 'yaml';
import { parseDuration } from '../../src/config/duration.js';
import { kyselyFromPool, migrateToLatest } from '../../src/db/migrator.js';
import { type RelayProcess, spawnRelay } from '../../test/helpers/relay-process.js';
import { createTestDatabase, type RedisServer, startRedisServer } from '../../test/helpers/services.js';
import { sleep } from '../lib/stats.js';
import { FAULT_NAMES, type InjectorResult, injectFaults } from './faults.js';
import { type OwnedCluster, startOwnedCluster } from './postgres-cluster.js';
import { type ProducerStats, produce } from './producer.js';
import { verify } from './verify.js';
import { startWatchdog } from './watchdog.js';

/**
 * `npm run soak -- [--duration 5m] [--rate 300] [--min-faults 100] [--fault-gap 250ms-1s] [--verbose]`: producers
 * write events (a tenth in transactions that roll back) while 3 relay daemons (the real CLI) and 2 idempotent
 * consumers run, and a fault injector (two lanes: process faults and server outages) SIGKILLs relays and consumers,
 * restarts the soak's own Redis (AOF, appendfsync always: an outage, not data loss), freezes it (SIGSTOP/SIGCONT),
 * terminates the relays' Postgres connections, restarts the soak's own Postgres cluster (initdb in a temp dir;
 * skipped, with the reason printed, where that is impossible) and makes a destination list WRONGTYPE for a moment
 * (per-event publish errors). Then it lets everything drain and checks the data: every committed event has exactly
 * one effect row, no rolled-back event shows up, per-aggregate order held. Exits 1 on any loss, duplicate or
 * reordering, when a fault kind never landed, or when fewer than --min-faults faults were injected.
 */
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    duration: { type: 'string', default: process.env.SOAK_DURATION ?? '5m' },
    rate: { type: 'string', default: process.env.SOAK_RATE ?? '300' },
    aggregates: { type: 'string', default: '200' },
    /** Fail below this many faults. @defaultValue one per 3 s of --duration (100 in 5 minutes) */
    'min-faults': { type: 'string' },
    /** Pause between two faults, min-max. */
    'fault-gap': { type: 'string', default: '250ms-1s' },
    /** Log every fault as it is injected. */
    verbose: { type: 'boolean', default: false },
  },
});
const durationMs = parseDuration(values.duration);
if (durationMs === undefined || durationMs < 5000)
  throw new Error(`--duration: expected e.g. 60s or 3m, got ${values.duration}`);
const gap = values['fault-gap'].split('-').map((d) => parseDuration(d));
if (gap.length !== 2 || gap.some((d) => d === undefined)) throw new Error('--fault-gap: expected e.g. 250ms-1s');
const rate = Number(values.rate);
const aggregates = Number(values.aggregates);
const minFaults = values['min-faults'] === undefined ? Math.floor(durationMs / 3000) : Number(values['min-faults']);
const RELAYS = 3;
const CONSUMERS = 2;
const PRODUCERS = 4;
const RELAY_APP = 'eo-soak-relay';
const CONSUMER = new URL('./consumer.ts', import.meta.url).pathname;
// Events name no `queue`: `queue_pattern` routes them by their priority header, one list (and consumer) per priority,
// so every event of an aggregate goes through one list and one consumer.
const PRIORITIES = ['low', 'high'] as const;
const QUEUE_PATTERN = 'soak:{priority}';
const listOf = (j: number) => QUEUE_PATTERN.replace('{priority}', PRIORITIES[j] as string);
const priorityOf = (aggregate: number) => PRIORITIES[aggregate % CONSUMERS] as 'high' | 'low';
const log = (m: string) => console.log(`[soak ${((performance.now() - t0) / 1000).toFixed(1)}s] ${m}`);
const t0 = performance.now();

// Everything the soak starts lives under this directory; its name is on every child's command line (watchdog.ts).
const dir = mkdtempSync(path.join(tmpdir(), 'eo-soak-'));
let aborted = false;
let wakeMain: () => void = () => {};
const abort = (why: string) => {
  if (aborted) return;
  log(`${why}: stopping and cleaning up`);
  aborted = true;
  wakeMain();
};
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => abort(signal));
// Started by a test that was itself stopped (a suite timeout): do not run on as an orphan, and do not die of EPIPE
// before the clean-up when the reader of our output is gone.
const parentPid = process.ppid;
process.stdout.on('error', () => {});
process.stderr.on('error', () => {});
setInterval(() => {
  if (process.ppid !== parentPid) abort('parent process gone');
}, 1000).unref();

// --- Postgres: a soak-owned cluster when possible, so it can be restarted; else a database on the shared server ---
const owned = await startOwnedCluster(dir);
const watchdog = startWatchdog(dir, 'unavailable' in owned ? [] : owned.stopCommand);
let databaseUrl: string;
let pool: pg.Pool;
/** Close the pool and drop the database (with the owned cluster: stop it and delete its files). */
let closeDatabase: () => Promise<void>;
if ('unavailable' in owned) {
  log(`no soak-owned Postgres cluster (${owned.unavailable}): the "postgres restart" fault is skipped`);
  const db = await createTestDatabase('soak');
  databaseUrl = db.url;
  pool = db.pool;
  closeDatabase = () => db.close().catch(() => {});
} else {
  const admin = new pg.Client({ connectionString: owned.adminUrl });
  await admin.connect();
  await admin.query('CREATE DATABASE soak');
  await admin.end();
  databaseUrl = owned.adminUrl.replace(/\/postgres$/, '/soak');
  const migrator = kyselyFromPool(new pg.Pool({ connectionString: databaseUrl, max: 1 }));
  await migrateToLatest(migrator);
  await migrator.destroy();
  pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  pool.on('error', () => {});
  closeDatabase = async () => {
    await pool.end().catch(() => {});
    await (owned as OwnedCluster).destroy();
  };
}
await pool.query(`
  CREATE TABLE soak_committed (event_id uuid PRIMARY KEY, aggregate_id text NOT NULL, n integer NOT NULL);
  CREATE INDEX ON soak_committed (aggregate_id, n);
  -- No unique constraint: a second effect of one event must show up as a second row, not as an error.
  CREATE TABLE soak_effects (id bigserial PRIMARY KEY, event_id uuid NOT NULL, aggregate_id text NOT NULL,
                             n integer NOT NULL, consumer text NOT NULL, applied_at timestamptz DEFAULT clock_timestamp());`);

// --- Redis: the soak's own server, persistent, so a restart is an outage and not data loss -------------------------
mkdirSync(path.join(dir, 'redis'));
const redisServer: RedisServer = await startRedisServer({ persistent: true, dir: path.join(dir, 'redis') });
const startRedis = redisServer.start.bind(redisServer);
redisServer.start = async () => {
  await startRedis();
  watchdog.track(redisServer.pid);
};
watchdog.track(redisServer.pid);

/** One config file per relay slot, each with its own `application_name`, so the soak can see which relays are up. */
function relayConfig(slot: number): string {
  const file = path.join(dir, `relay-${slot}.yaml`);
  const url = new URL(databaseUrl);
  url.searchParams.set('application_name', `${RELAY_APP}-${slot}`); // the injector finds the relays' connections by it
  writeFileSync(file, relayYaml(url.toString()));
  return file;
}
const relayYaml = (url: string) =>
  stringify({
    exactly_once: {
      database: { url },
      redis: { url: redisServer.url },
      admin: { port: 0 },
      outbox: {
        queue_pattern: QUEUE_PATTERN,
        batch_size: 50,
        poll_interval: '200ms',
        // Publish errors are injected on purpose: keep retrying (quickly) instead of marking events failed.
        max_retries: 100_000,
        retry_backoff: { initial_delay: '50ms', max_delay: '1s' },
        publish_timeout: '2s',
        claim_timeout: '10s',
        dedup_window: '1h',
      },
    },
  });
const relayConfigs = Array.from({ length: RELAYS }, (_, slot) => relayConfig(slot));

function startRelay(slot: number): RelayProcess {
  const relay = spawnRelay(relayConfigs[slot] as string);
  watchdog.track(relay.child.pid);
  return relay;
}

function startConsumer(j: number): ChildProcess {
  const args = {
    databaseUrl,
    redisUrl: redisServer.url,
    source: listOf(j),
    processing: `${listOf(j)}:processing`,
    name: `soak-consumer-${j}`,
    soakDir: dir,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', CONSUMER, JSON.stringify(args)], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'silent' },
  });
  watchdog.track(child.pid);
  return child;
}

/** Poll until `check` holds; give up (and fail the soak) after 3 minutes, which only a broken start takes. */
async function waitUntil(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 180_000;
  while (!(await check().catch(() => false))) {
    if (aborted || Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await sleep(250);
  }
}

async function killAndRestart(child: ChildProcess, restart: () => void): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
  restart();
}

const relays: RelayProcess[] = Array.from({ length: RELAYS }, (_, slot) => startRelay(slot));
const consumers: ChildProcess[] = Array.from({ length: CONSUMERS }, (_, j) => startConsumer(j));
const faultRedis = new Redis(redisServer.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
faultRedis.on('error', () => {});

let exitCode = 1;
try {
  // --- warm-up: the clock starts once every relay is connected to Postgres and every consumer to Redis -----------
  await waitUntil(async () => {
    const { rows } = await pool.query<{ n: number }>(
      "SELECT count(DISTINCT application_name)::int AS n FROM pg_stat_activity WHERE application_name LIKE $1 || '-%'",
      [RELAY_APP],
    );
    const clients = (await faultRedis.client('LIST')) as string;
    const consumersUp = Array.from({ length: CONSUMERS }, (_, j) => clients.includes(`name=soak-consumer-${j} `));
    return rows[0]?.n === RELAYS && consumersUp.every(Boolean);
  }, 'every relay and consumer to connect');
  log('relays and consumers are up');

  // --- run -----------------------------------------------------------------------------------------------------
  log(
    `running ${values.duration}: ${PRODUCERS} producers at ~${rate} events/s, ${RELAYS} relays, ${CONSUMERS} consumers`,
  );
  let running = true;
  const isRunning = () => running && !aborted;
  const stats: ProducerStats = { committedTx: 0, rolledBackTx: 0, errors: 0, rolledBack: new Set() };
  const producers = Array.from({ length: PRODUCERS }, (_, index) =>
    produce({
      databaseUrl,
      index,
      producers: PRODUCERS,
      aggregates,
      eventsPerSecond: rate,
      priorityOf,
      isRunning,
      stats,
    }),
  );
  const injected: Promise<InjectorResult> = injectFaults(
    {
      killRelay: () => {
        const i = Math.floor(Math.random() * RELAYS);
        return killAndRestart((relays[i] as RelayProcess).child, () => {
          relays[i] = startRelay(i);
        });
      },
      killConsumer: () => {
        const j = Math.floor(Math.random() * CONSUMERS);
        return killAndRestart(consumers[j] as ChildProcess, () => {
          consumers[j] = startConsumer(j);
        });
      },
      redisServer,
      redis: faultRedis,
      lists: Array.from({ length: CONSUMERS }, (_, j) => listOf(j)),
      databaseUrl,
      relayApplicationName: RELAY_APP,
      postgres: owned,
    },
    { isRunning, gapMs: gap as [number, number], log, verbose: values.verbose },
  );
  await new Promise<void>((resolve) => {
    wakeMain = resolve;
    setTimeout(resolve, durationMs);
  });
  running = false;
  const [{ counts, skipped, failedAttempts }] = await Promise.all([injected, ...producers]);
  log(
    `producing stopped: ${stats.committedTx} transactions committed, ${stats.rolledBackTx} rolled back, ${stats.errors} failed${stats.lastError ? ` (last error: ${stats.lastError})` : ''}`,
  );

  // --- drain: everything must be running (a restart may have been cut short by the end of the run) ---------------
  relays.forEach((r, i) => {
    if (r.child.exitCode !== null || r.child.signalCode !== null) relays[i] = startRelay(i);
  });
  consumers.forEach((c, j) => {
    if (c.exitCode !== null || c.signalCode !== null) consumers[j] = startConsumer(j);
  });
  const count = async () => {
    const { rows } = await pool.query<{ committed: number; applied: number }>(
      `SELECT (SELECT count(*)::int FROM soak_committed) AS committed,
              (SELECT count(DISTINCT event_id)::int FROM soak_effects) AS applied`,
    );
    return rows[0] as { committed: number; applied: number };
  };
  // Consumers may be far behind (one job at a time each, on a loaded machine): wait while they make progress, and
  // give up after a minute without any (or 30 minutes in all); what is missing then is reported as lost.
  const hardDeadline = Date.now() + 30 * 60_000;
  let c = { committed: 1, applied: 0 };
  let lastReport = Date.now();
  let lastProgress = Date.now();
  while (c.applied < c.committed && !aborted) {
    if (Date.now() - lastProgress > 60_000 || Date.now() > hardDeadline) {
      log('drain: gave up (no progress for a minute, or 30 minutes in all)');
      break;
    }
    await sleep(250);
    const before = c.applied;
    c = await count().catch(() => c); // the first query after a restart may meet a dead pooled connection
    if (c.applied > before) lastProgress = Date.now();
    if (Date.now() - lastReport > 10_000) {
      lastReport = Date.now();
      log(`draining: ${c.applied} of ${c.committed} applied`);
    }
  }
  log(`drained: ${c.applied} of ${c.committed} committed events applied`);
  await sleep(1000); // a late duplicate, if there were one, has time to land and be counted
  const result = await verify(pool, stats.rolledBack);
  const { rows: errorRows } = await pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM exactly_once_outbox WHERE last_error LIKE '%WRONGTYPE%'",
  );

  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  console.log(`\nfaults injected: ${total} in ${values.duration}`);
  for (const name of FAULT_NAMES)
    console.log(`  ${name.padEnd(44)} ${skipped[name] ? `skipped: ${skipped[name]}` : counts[name]}`);
  console.log(`injections retried later (their server was down at the time): ${failedAttempts}`);
  console.log(`events that met a publish error (WRONGTYPE): ${errorRows[0]?.n ?? 0}`);
  console.log(
    `events checked: ${result.committed} committed (${stats.committedTx} transactions), ${stats.rolledBack.size} rolled back`,
  );
  console.log(`rolled-back events seen: ${result.phantoms}; outbox rows failed: ${result.failed}`);
  console.log(`lost ${result.lost}, duplicated ${result.duplicated}, reordered ${result.reordered}`);
  const missing = FAULT_NAMES.filter((n) => !skipped[n] && counts[n] === 0);
  if (missing.length > 0) console.log(`FAIL: fault kinds that never landed: ${missing.join(', ')}`);
  if (total < minFaults) console.log(`FAIL: ${total} faults injected, fewer than --min-faults ${minFaults}`);
  exitCode = result.ok && !aborted && missing.length === 0 && total >= minFaults && result.committed > 0 ? 0 : 1;
} finally {
  for (const r of relays) r.child.kill('SIGKILL');
  for (const c of consumers) c.kill('SIGKILL');
  await Promise.all([
    ...relays.map((r) => r.exited),
    ...consumers.map((c) =>
      c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined,
    ),
  ]);
  faultRedis.disconnect();
  redisServer.signal('SIGCONT');
  await redisServer.kill();
  await closeDatabase();
  watchdog.dismiss();
}
process.exit(exitCode);
