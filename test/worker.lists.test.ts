import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createWorker } from '../src/entries/worker.js';
import { waitFor } from './helpers/services.js';
import { relayJob, scanKeys, type WorkerEnv, workerEnv } from './helpers/worker-env.js';

// The worker on go-redis-work-queue lists, in process: jobs the relay's shape are processed once each, high before
// low, failures retried with backoff and then dead-lettered, a stop leaves nothing behind, and a redelivered job is
// recognised as a duplicate by the idempotency service.

let env: WorkerEnv;
before(async () => {
  env = await workerEnv('worker_lists');
});
after(async () => {
  await env.close();
});

const processingLists = async () => {
  const keys = await scanKeys(env.redis, `${env.keyPrefix}worker:*:processing`);
  return keys;
};

test('processes every job once, high priority before low, and a stop leaves no processing list or heartbeat', async () => {
  const order: string[] = [];
  for (let i = 0; i < 20; i++) await env.redis.lpush(env.low, relayJob({ id: `low-${i}` }));
  for (let i = 0; i < 5; i++) await env.redis.lpush(env.high, relayJob({ id: `high-${i}`, priority: 'high' }));
  const worker = createWorker({
    config: env.config(),
    concurrency: 1,
    process: (job) => {
      order.push(job.id);
      return { seen: job.id };
    },
  });
  await worker.start();
  await waitFor(() => order.length === 25, 20_000, '25 jobs processed');
  await worker.stop();
  assert.deepEqual(order.slice(0, 5), ['high-0', 'high-1', 'high-2', 'high-3', 'high-4'], 'high first, oldest first');
  assert.deepEqual(
    order.slice(5),
    Array.from({ length: 20 }, (_, i) => `low-${i}`),
  );
  assert.deepEqual(worker.stats(), { processed: 25, duplicates: 0, retried: 0, dead: 0, inFlight: 0, waitingRetry: 0 });
  assert.deepEqual(await processingLists(), []);
  assert.equal(await env.redis.exists(`${env.keyPrefix}processing:worker:${worker.id}`), 0, 'heartbeat deleted');
  assert.equal(await env.redis.hexists(`${env.keyPrefix}workers`, worker.id), 0, 'return address deleted');
  assert.equal(await env.redis.llen(env.completed), 25, 'completed list, as go-redis-work-queue keeps it');
});

test('a failing job is retried with its retries count raised, then dead-lettered with the error', async () => {
  const id = 'always-fails';
  // A number beyond 2^53, written as the relay writes it (Postgres's text): a JSON.parse + stringify would round it.
  await env.redis.lpush(env.low, relayJob({ id, payload: { big: 1 } }).replace('"big":1', '"big":123456789012345678'));
  const attempts: number[] = [];
  const worker = createWorker({
    config: env.config({ worker: { max_retries: 2 } }),
    process: (_job, { attempt }) => {
      attempts.push(attempt);
      throw new Error(`boom ${attempt}`);
    },
  });
  await worker.start();
  await waitFor(async () => (await env.redis.llen(env.deadLetter)) === 1, 20_000, 'the job dead-lettered');
  await worker.stop();
  assert.deepEqual(attempts, [1, 2, 3], 'max_retries 2: three attempts');
  const dead = JSON.parse((await env.redis.lindex(env.deadLetter, 0)) as string);
  assert.equal(dead.id, id);
  assert.equal(dead.retries, 3);
  assert.equal(dead.last_error, 'boom 3');
  assert.equal(dead.dead_from, env.low);
  assert.equal(dead.event_type, 'order.created', 'the event rides along');
  assert.match(
    (await env.redis.lindex(env.deadLetter, 0)) as string,
    /"big":123456789012345678/,
    'numbers kept exactly',
  );
  assert.equal(worker.stats().retried, 2);
  assert.equal(worker.stats().dead, 1);
  assert.deepEqual(await processingLists(), []);
  await env.redis.del(env.deadLetter);
});

test('a job that is no JSON object goes to the dead-letter list at once', async () => {
  await env.redis.lpush(env.low, 'not json', '{"no":"id"}');
  const worker = createWorker({ config: env.config(), process: () => assert.fail('must not run') });
  await worker.start();
  await waitFor(async () => (await env.redis.llen(env.deadLetter)) === 2, 20_000, 'two dead entries');
  await worker.stop();
  const entries = (await env.redis.lrange(env.deadLetter, 0, -1)).map((e) => JSON.parse(e));
  assert.ok(entries.some((e) => e.invalid_payload === 'not json' && /invalid job: not JSON/.test(e.last_error)));
  assert.ok(entries.some((e) => e.no === 'id' && /no "id"/.test(e.last_error)));
  await env.redis.del(env.deadLetter);
});

test('a redelivered job is a duplicate: the effect ran once, the second delivery is acknowledged', async () => {
  const job = relayJob({ id: 'twice' });
  await env.redis.lpush(env.low, job, job);
  let runs = 0;
  const worker = createWorker({
    config: env.config(),
    concurrency: 1,
    process: () => {
      runs++;
      return 'done';
    },
  });
  await worker.start();
  await waitFor(() => worker.stats().processed + worker.stats().duplicates === 2, 20_000, 'both deliveries');
  await worker.stop();
  assert.equal(runs, 1);
  assert.equal(worker.stats().duplicates, 1);
  assert.equal(await env.redis.llen(env.low), 0);
});

test("the reaper returns a dead worker's jobs (a Go worker's list, no heartbeat) to the queue of their priority", async () => {
  const deadList = `${env.keyPrefix}worker:gohost-4242-1-abcd-0:processing`;
  await env.redis.lpush(deadList, relayJob({ id: 'orphan-high', priority: 'high' }), relayJob({ id: 'orphan-low' }));
  const seen: string[] = [];
  const worker = createWorker({ config: env.config(), process: (job) => seen.push(job.id) });
  await worker.start();
  await waitFor(() => seen.length === 2, 20_000, 'the orphans processed');
  await worker.stop();
  assert.deepEqual(seen.sort(), ['orphan-high', 'orphan-low']);
  assert.equal(await env.redis.exists(deadList), 0);
});

test('a stop during a job waits for it and acknowledges it; a job waiting for its retry goes back to its queue', async () => {
  await env.redis.lpush(env.low, relayJob({ id: 'slow' }), relayJob({ id: 'flaky' }));
  let release: () => void = () => {};
  const slowStarted = new Promise<void>((started) => {
    release = started;
  });
  let finishSlow: () => void = () => {};
  const worker = createWorker({
    config: env.config({ worker: { backoff: { base: '1m', max: '1m' } } }),
    concurrency: 2,
    process: async (job) => {
      if (job.id === 'flaky') throw new Error('try later');
      release();
      await new Promise<void>((r) => {
        finishSlow = r;
      });
    },
  });
  await worker.start();
  await slowStarted;
  await waitFor(() => worker.stats().waitingRetry === 1, 10_000, 'the flaky job waiting for its retry');
  const stopped = worker.stop();
  finishSlow();
  await stopped;
  assert.equal(worker.stats().processed, 1);
  const back = (await env.redis.lrange(env.low, 0, -1)).map((j) => JSON.parse(j));
  assert.deepEqual(
    back.map((j) => [j.id, j.retries]),
    [['flaky', 1]],
  );
  assert.deepEqual(await processingLists(), []);
  await env.redis.del(env.low);
});

test('a worker without a usable handler, or a transactional one without the Postgres store, is refused at creation', () => {
  assert.throws(() => createWorker({ config: env.config() } as never), { code: 'EO_WORKER_HANDLER' });
  assert.throws(
    () =>
      createWorker({
        config: env.config({ idempotency: { storage: { type: 'redis' } } }),
        processInTransaction: async () => {},
      }),
    { code: 'EO_IDEMPOTENCY_NO_TRANSACTION' },
  );
});
