import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { writeConfigFile } from './helpers/relay-process.js';
import { waitFor } from './helpers/services.js';
import { relayJob, scanKeys, type WorkerEnv, workerEnv } from './helpers/worker-env.js';
import { spawnWorker, type WorkerProcess, writeEffectModule } from './helpers/worker-process.js';

// `exactly-once worker` processes SIGKILLed at random in the middle of jobs, on lists and on a stream. Checked from the
// data: every job's effect row exists exactly once, nothing is left in a processing list (or pending in the group)
// once the reaper's interval has passed, nothing was dead-lettered; the survivors stop on SIGTERM with exit 0.

const LIST_JOBS = 4000;
const STREAM_JOBS = 2000;
const KILLS = 5;

let env: WorkerEnv;
let handler: ReturnType<typeof writeEffectModule>;
before(async () => {
  env = await workerEnv('worker_crash');
  await env.db.pool.query('CREATE TABLE worker_effects (job_id text NOT NULL, pid int NOT NULL)');
  handler = writeEffectModule('worker_effects', 30);
});
after(async () => {
  handler.remove();
  await env.close();
});

async function effects(): Promise<{ rows: number; distinct: number; twice: string[] }> {
  const { rows } = await env.db.pool.query<{ rows: string; distinct: string; twice: string[] | null }>(
    `SELECT count(*) AS rows, count(DISTINCT job_id) AS distinct,
            (SELECT array_agg(job_id) FROM (SELECT job_id FROM worker_effects GROUP BY job_id HAVING count(*) > 1) d) AS twice
       FROM worker_effects`,
  );
  const r = rows[0] as { rows: string; distinct: string; twice: string[] | null };
  return { rows: Number(r.rows), distinct: Number(r.distinct), twice: r.twice ?? [] };
}

/** The pids of the workers whose heartbeat is in Redis: they are past start-up and hold their signal handlers. */
async function runningPids(): Promise<Set<number>> {
  const keys = await scanKeys(env.redis, `${env.keyPrefix}processing:worker:*`);
  const values = keys.length > 0 ? await env.redis.mget(keys) : [];
  return new Set(values.filter((v) => v !== null).map((v) => JSON.parse(v as string).pid as number));
}

/**
 * Kill a random running worker KILLS times, each time starting a new one in its place, and say how many jobs were
 * still waiting at each kill (so the kills are known to have landed mid-run).
 */
async function killAtRandom(workers: WorkerProcess[], spawn: () => WorkerProcess, backlog: () => Promise<number>) {
  const waiting: number[] = [];
  for (let i = 0; i < KILLS; i++) {
    await waitFor(async () => (await runningPids()).size >= workers.length, 60_000, 'every worker running');
    await new Promise((r) => setTimeout(r, 100 + Math.random() * 300));
    const at = Math.floor(Math.random() * workers.length);
    const victim = workers[at] as WorkerProcess;
    victim.child.kill('SIGKILL');
    waiting.push(await backlog());
    await victim.exited;
    workers[at] = spawn();
  }
  return waiting;
}

async function stopAll(workers: WorkerProcess[]): Promise<void> {
  await waitFor(
    async () => {
      const pids = await runningPids();
      return workers.every((w) => pids.has(w.child.pid as number));
    },
    60_000,
    'every worker running before SIGTERM',
  );
  for (const w of workers) w.child.kill('SIGTERM');
  for (const w of workers) {
    const exit = await w.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, `a worker stopped on SIGTERM: ${w.output()}`);
  }
}

test('list workers SIGKILLed mid-job: every effect once, no job left in a processing list after the reaper interval', async () => {
  const configFile = writeConfigFile('worker-crash', env.tree({ worker: { concurrency: 8 } }));
  const pipeline = env.redis.pipeline();
  for (let i = 0; i < LIST_JOBS; i++) {
    const priority = i % 5 === 0 ? 'high' : 'low';
    pipeline.lpush(priority === 'high' ? env.high : env.low, relayJob({ id: `job-${i}`, priority }));
  }
  await pipeline.exec();
  const spawn = () => spawnWorker(configFile, ['--module', handler.file]);
  const workers = [spawn(), spawn(), spawn()];
  const waiting = await killAtRandom(
    workers,
    spawn,
    async () => (await env.redis.llen(env.low)) + (await env.redis.llen(env.high)),
  );
  assert.ok(
    waiting.every((n) => n > 0),
    `every kill landed while jobs were waiting: ${waiting}`,
  );
  await waitFor(async () => (await effects()).distinct === LIST_JOBS, 180_000, `${LIST_JOBS} effects`);
  // The reaper's interval (500 ms) after the killed workers' heartbeats (2 s) lapsed: nothing stuck anywhere.
  await waitFor(
    async () => {
      const lists = await scanKeys(env.redis, `${env.keyPrefix}worker:*:processing`);
      return lists.length === 0;
    },
    30_000,
    'every processing list gone',
  );
  const e = await effects();
  assert.deepEqual(e.twice, [], 'no job had its effect twice');
  assert.equal(e.rows, LIST_JOBS);
  assert.equal(await env.redis.llen(env.low), 0);
  assert.equal(await env.redis.llen(env.high), 0);
  assert.equal(await env.redis.llen(env.deadLetter), 0);
  await stopAll(workers);
  const beats = await scanKeys(env.redis, `${env.keyPrefix}processing:worker:*`);
  assert.deepEqual(beats, [], 'stopped workers delete their heartbeats; killed ones expired');
});

test('stream workers SIGKILLed mid-job: XAUTOCLAIM takes their entries over, every effect once, nothing pending', async () => {
  await env.db.pool.query('TRUNCATE worker_effects');
  const stream = `${env.prefix}orders-stream`;
  const configFile = writeConfigFile(
    'worker-crash-stream',
    env.tree({ worker: { concurrency: 8, stream: { group: 'billing', claim_idle: '1s' } } }),
  );
  const pipeline = env.redis.pipeline();
  for (let i = 0; i < STREAM_JOBS; i++) {
    pipeline.xadd(stream, '*', 'id', `entry-${i}`, 'priority', 'low', 'retries', '0', 'payload', '{"n":1}');
  }
  await pipeline.exec();
  const spawn = () => spawnWorker(configFile, ['--module', handler.file, '--stream', stream]);
  const workers = [spawn(), spawn(), spawn()];
  const waiting = await killAtRandom(workers, spawn, async () => STREAM_JOBS - (await effects()).distinct);
  assert.ok(
    waiting.every((n) => n > 0),
    `every kill landed while entries were waiting: ${waiting}`,
  );
  await waitFor(async () => (await effects()).distinct === STREAM_JOBS, 180_000, `${STREAM_JOBS} effects`);
  await waitFor(
    async () => ((await env.redis.call('XPENDING', stream, 'billing')) as [number])[0] === 0,
    30_000,
    'no entry pending in the group',
  );
  const e = await effects();
  assert.deepEqual(e.twice, []);
  assert.equal(e.rows, STREAM_JOBS);
  await stopAll(workers);
});
