import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createWorker } from '../src/entries/worker.js';
import { replayDeadLetters } from '../src/worker/dead-letters.js';
import { workerKeys } from '../src/worker/keys.js';
import { waitFor } from './helpers/services.js';
import { type WorkerEnv, workerEnv } from './helpers/worker-env.js';

// The worker on a stream's consumer group, in process: entries processed and acknowledged once, a failing entry
// retried as a copy with its retries raised and then dead-lettered with the stream as its origin, and its replay a
// new entry of that stream that the group processes.

let env: WorkerEnv;
before(async () => {
  env = await workerEnv('worker_stream');
});
after(async () => {
  await env.close();
});

test('a stream entry that keeps failing is retried, dead-lettered, replayed onto its stream, then processed', async () => {
  const stream = `${env.prefix}audit`;
  await env.redis.xadd(stream, '*', 'id', 'ok-1', 'priority', 'low', 'retries', '0', 'payload', '{"n":1}');
  await env.redis.xadd(stream, '*', 'id', 'bad-1', 'priority', 'low', 'retries', '0', 'payload', '{"n":2}');
  let healed = false;
  const seen: [string, number, unknown][] = [];
  const worker = createWorker({
    config: env.config({ worker: { max_retries: 1, stream: { group: 'audit', claim_idle: '1s' } } }),
    stream,
    process: (job, { attempt }) => {
      seen.push([job.id, attempt, job.payload]);
      if (job.id === 'bad-1' && !healed) throw new Error('downstream refused');
    },
  });
  await worker.start();
  await waitFor(async () => (await env.redis.llen(env.deadLetter)) === 1, 20_000, 'bad-1 dead-lettered');
  const dead = JSON.parse((await env.redis.lindex(env.deadLetter, 0)) as string);
  assert.deepEqual(
    [dead.id, dead.retries, dead.dead_from, dead.dead_kind, dead.last_error],
    ['bad-1', 2, stream, 'stream', 'downstream refused'],
  );
  healed = true;
  const keys = workerKeys(env.keyPrefix);
  const replayed = await replayDeadLetters(env.redis, keys, { queues: [], defaultPriority: 'low' }, { ids: ['bad-1'] });
  assert.deepEqual(replayed, { replayed: 1, missing: [] });
  await waitFor(() => worker.stats().processed === 2, 20_000, 'the replayed entry processed');
  await worker.stop();
  assert.deepEqual(
    seen.filter(([id]) => id === 'ok-1'),
    [['ok-1', 1, { n: 1 }]],
  );
  assert.deepEqual(
    seen.filter(([id]) => id === 'bad-1'),
    [
      ['bad-1', 1, { n: 2 }],
      ['bad-1', 2, { n: 2 }],
      ['bad-1', 1, { n: 2 }],
    ],
    'two attempts, then the replay (retries back to 0)',
  );
  assert.equal(await env.redis.llen(env.deadLetter), 0);
  assert.equal(((await env.redis.call('XPENDING', stream, 'audit')) as [number])[0], 0, 'nothing pending');
  const groups = (await env.redis.call('XINFO', 'CONSUMERS', stream, 'audit')) as unknown[];
  assert.equal(groups.length, 0, 'a stopped consumer that holds nothing leaves the group');
});
