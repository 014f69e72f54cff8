import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { parseDuration } from '../../src/config/duration.js';
import { createTestDatabase, REDIS_URL } from '../../test/helpers/services.js';
import { scanKeys } from '../../test/helpers/worker-env.js';
import { sleep } from '../lib/stats.js';
import { startWatchdog } from './watchdog.js';

/**
 * `npm run soak -- --worker [--jobs 100000] [--workers 4] [--kill-gap 4s-10s] [--fail-rate 0.01] [--rate N] [--min-kills N]`:
 * jobs in go-redis-work-queue's shape flow into the high and low lists (the backlog kept under 2,000, so they flow for
 * the whole run) while `--workers` `exactly-once worker` processes (the real CLI) apply each job's effect with
 * `processInTransaction`, and a killer SIGKILLs a random worker every `--kill-gap` and starts another in its place.
 * The handler also fails `--fail-rate` of its attempts (after its insert, so the transaction rolls back) to keep the
 * retry path busy. Checked from the data: one effect row per job, none twice, none lost; no job stuck in a processing
 * list once the reaper's interval has passed; nothing dead-lettered; every survivor stops on SIGTERM with exit 0.
 */
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    jobs: { type: 'string', default: '100000' },
    workers: { type: 'string', default: '4' },
    concurrency: { type: 'string', default: '16' },
    'kill-gap': { type: 'string', default: '4s-10s' },
    'fail-rate': { type: 'string', default: '0.01' },
    /** Jobs pushed per second (0: as fast as the workers take them, the backlog kept under 2,000). */
    rate: { type: 'string', default: '0' },
    /** Each attempt's work after its insert, ms (random up to this). */
    'work-ms': { type: 'string', default: '4' },
    /** Fail below this many SIGKILLs. @defaultValue one per 4,000 jobs */
    'min-kills': { type: 'string' },
  },
});
const JOBS = Number(values.jobs);
const WORKERS = Number(values.workers);
const gap = values['kill-gap'].split('-').map((d) => parseDuration(d));
if (gap.length !== 2 || gap.some((d) => d === undefined)) throw new Error('--kill-gap: expected e.g. 1s-3s');
const [gapMin, gapMax] = gap as [number, number];
const minKills = values['min-kills'] === undefined ? Math.floor(JOBS / 4000) : Number(values['min-kills']);
const BACKLOG = 2000;
const RATE = Number(values.rate);
const HEARTBEAT_TTL_MS = 2000;
const REAPER_MS = 1000;
const BIN = new URL('../../bin/exactly-once.js', import.meta.url).pathname;
const t0 = performance.now();
const log = (m: string) => console.log(`[worker soak ${((performance.now() - t0) / 1000).toFixed(1)}s] ${m}`);

const dir = mkdtempSync(path.join(tmpdir(), 'eo-worker-soak-'));
const watchdog = startWatchdog(dir, []);
const db = await createTestDatabase('worker_soak');
const redis = new Redis(REDIS_URL);
const prefix = `eos:worker:${path.basename(dir).slice(-6)}:jobqueue:`;
const high = `${prefix}high_priority`;
const low = `${prefix}low_priority`;
await db.pool.query('CREATE TABLE soak_worker_effects (job_id text NOT NULL, pid int NOT NULL)');

const configFile = path.join(dir, 'worker.yaml');
writeFileSync(
  configFile,
  stringify({
    exactly_once: {
      database: { url: db.url },
      redis: { url: REDIS_URL },
      outbox: { queue_pattern: `${prefix}{priority}_priority` },
      idempotency: { key_prefix: `${prefix}idem:`, lease: '5s', wait_timeout: '2s' },
      metrics: { enabled: false },
      worker: {
        key_prefix: prefix,
        concurrency: Number(values.concurrency),
        heartbeat_ttl: `${HEARTBEAT_TTL_MS}ms`,
        block_timeout: '200ms',
        reaper_interval: `${REAPER_MS}ms`,
        max_retries: 20,
        backoff: { base: '10ms', max: '200ms' },
      },
    },
  }),
);
// Failed attempts are counted in a file per process (synchronously: a SIGKILL must not lose the count).
const handler = path.join(dir, 'handler.mjs');
writeFileSync(
  handler,
  `import { appendFileSync } from 'node:fs';
export default {
  async processInTransaction(job, trx) {
    await trx.insertInto('soak_worker_effects').values({ job_id: job.id, pid: process.pid }).execute();
    await new Promise((r) => setTimeout(r, Math.random() * ${Number(values['work-ms'])}));
    if (Math.random() < ${Number(values['fail-rate'])}) {
      appendFileSync(${JSON.stringify(dir)} + '/failed-' + process.pid, 'x');
      throw new Error('induced failure');
    }
  },
};
`,
);

const workers: ChildProcess[] = [];
const exits = new Map<ChildProcess, Promise<number | null>>();
function startWorker(): ChildProcess {
  const child = spawn(process.execPath, [BIN, 'worker', '--config', configFile, '--module', handler, '--port', '0'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'error' },
  });
  exits.set(child, new Promise((resolve) => child.once('exit', (code) => resolve(code))));
  watchdog.track(child.pid);
  return child;
}
let aborted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => (aborted = true));

/** Worker ids by pid, of the workers whose heartbeat is in Redis (past start-up). */
async function runningPids(): Promise<Map<number, string>> {
  const keys = await scanKeys(redis, `${prefix}processing:worker:*`);
  const beats = keys.length > 0 ? await redis.mget(keys) : [];
  const out = new Map<number, string>();
  for (const b of beats) if (b !== null) out.set(JSON.parse(b).pid as number, JSON.parse(b).id as string);
  return out;
}
async function effects(): Promise<{ rows: number; distinct: number }> {
  const { rows } = await db.pool.query('SELECT count(*) AS r, count(DISTINCT job_id) AS d FROM soak_worker_effects');
  return { rows: Number(rows[0].r), distinct: Number(rows[0].d) };
}
async function processingLists(): Promise<{ lists: number; jobs: number }> {
  const keys = await scanKeys(redis, `${prefix}worker:*:processing`);
  let jobs = 0;
  for (const key of keys) jobs += await redis.llen(key);
  return { lists: keys.length, jobs };
}

for (let i = 0; i < WORKERS; i++) workers.push(startWorker());
log(`${WORKERS} workers starting; ${JOBS.toLocaleString('en-US')} jobs to flow`);

let pushed = 0;
const producing = (async () => {
  while (pushed < JOBS && !aborted) {
    if ((await redis.llen(low)) + (await redis.llen(high)) >= BACKLOG) {
      await sleep(20);
      continue;
    }
    const n = Math.min(RATE > 0 ? Math.max(1, Math.round(RATE / 10)) : 500, JOBS - pushed);
    if (RATE > 0) await sleep(100);
    const pipeline = redis.pipeline();
    for (let i = 0; i < n; i++, pushed++) {
      const priority = pushed % 5 === 0 ? 'high' : 'low';
      pipeline.lpush(priority === 'high' ? high : low, jobText(`job-${pushed}`, priority));
    }
    await pipeline.exec();
  }
})();

let kills = 0;
let landedMidJob = 0;
while (!aborted && (await effects()).distinct < JOBS) {
  await sleep(gapMin + Math.random() * (gapMax - gapMin));
  // The survivors' heartbeats only: a worker SIGKILLed just before the end keeps its own until heartbeat_ttl.
  const running = await runningPids();
  const candidates = workers.filter((w) => running.has(w.pid as number));
  if (candidates.length === 0) continue;
  const victim = candidates[Math.floor(Math.random() * candidates.length)] as ChildProcess;
  // Mid-job: the victim holds jobs in its processing list as it dies.
  const holding = await redis.llen(`${prefix}worker:${running.get(victim.pid as number)}:processing`);
  victim.kill('SIGKILL');
  await exits.get(victim);
  kills++;
  if (holding > 0) landedMidJob++;
  workers[workers.indexOf(victim)] = startWorker();
  if (kills % 10 === 0) log(`${kills} kills; ${(await effects()).distinct} of ${JOBS} effects`);
}
await producing;
const flowSeconds = (performance.now() - t0) / 1000;
log(`every job applied after ${flowSeconds.toFixed(1)}s; waiting for the reaper to empty the killed workers' lists`);
const stuckDeadline = Date.now() + HEARTBEAT_TTL_MS + REAPER_MS + 15_000;
while ((await processingLists()).lists > 0 && Date.now() < stuckDeadline) await sleep(100);

const e = await effects();
const stuck = await processingLists();
const dead = await redis.llen(`${prefix}dead_letter`);
const left = (await redis.llen(low)) + (await redis.llen(high));
const { rows: twice } = await db.pool.query(
  'SELECT count(*) AS n FROM (SELECT job_id FROM soak_worker_effects GROUP BY job_id HAVING count(*) > 1) d',
);
const duplicated = Number(twice[0].n);
const induced = readdirSync(dir)
  .filter((f) => f.startsWith('failed-'))
  .reduce((sum, f) => sum + readFileSync(path.join(dir, f), 'utf8').length, 0);

// SIGTERM only once every worker is past start-up (a process still loading has no handler for it yet).
const upDeadline = Date.now() + 120_000;
while (Date.now() < upDeadline) {
  const up = await runningPids();
  if (workers.every((w) => up.has(w.pid as number))) break;
  await sleep(100);
}
for (const w of workers) w.kill('SIGTERM');
const codes = await Promise.all(workers.map((w) => exits.get(w)));
// The survivors' heartbeats only: a worker SIGKILLed just before the end keeps its own until heartbeat_ttl.
const survivorsBeating = [...(await runningPids()).keys()].filter((pid) => workers.some((w) => w.pid === pid));

console.log(`jobs ${JOBS}, worker processes ${WORKERS}, SIGKILLs ${kills} (${landedMidJob} holding jobs)`);
console.log(`induced handler failures (retried) ${induced}; dead-lettered ${dead}; left in the queues ${left}`);
console.log(`flow ${flowSeconds.toFixed(1)} s, ${Math.round(JOBS / flowSeconds)} jobs/s with the kills`);
console.log(`survivors' exit codes on SIGTERM: ${codes.join(',')}; heartbeats left ${survivorsBeating.length}`);
console.log(
  `lost ${JOBS - e.distinct}, duplicated ${duplicated}, stuck in processing lists ${stuck.jobs} (lists ${stuck.lists})`,
);

const failures: string[] = [];
if (e.distinct !== JOBS || e.rows !== JOBS || duplicated !== 0) failures.push('effects not exactly once');
if (stuck.lists !== 0) failures.push('processing lists left after the reaper interval');
if (dead !== 0 || left !== 0) failures.push('jobs dead-lettered or left');
if (kills < minKills) failures.push(`only ${kills} kills (--min-kills ${minKills})`);
if (codes.some((c) => c !== 0) || survivorsBeating.length !== 0) failures.push('a survivor did not stop cleanly');
if (aborted) failures.push('aborted');

let cursor = '0';
do {
  const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 5000);
  cursor = next;
  if (keys.length > 0) await redis.unlink(...keys);
} while (cursor !== '0');
redis.disconnect();
await db.close();
watchdog.dismiss();
console.log(failures.length === 0 ? 'OK: every job had its effect exactly once' : `FAILED: ${failures.join('; ')}`);
process.exit(failures.length === 0 ? 0 : 1);

function jobText(id: string, priority: string): string {
  return JSON.stringify({
    id,
    filepath: '',
    filesize: 0,
    priority,
    retries: 0,
    creation_time: new Date().toISOString(),
    trace_id: '',
    span_id: '',
    event_type: 'soak',
    aggregate_type: 'soak',
    aggregate_id: id,
    tenant_id: '',
    payload: { id },
    headers: {},
  });
}
