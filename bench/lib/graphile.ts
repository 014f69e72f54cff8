import { Logger, makeWorkerUtils, type Runner, run, type WorkerUtils } from 'graphile-worker';
import type { Redis } from 'ioredis';

/** graphile-worker's schema in the bench database (dropped by the caller with the database or by `dropGraphile`). */
export const GRAPHILE_SCHEMA = 'graphile_worker_bench';
const TASK = 'outbox_event';

/**
 * Seed `n` graphile-worker jobs the way a producer would (`addJobs`, which is `graphile_worker.add_jobs()` in one
 * statement per chunk), each carrying the same event fields as the outbox rows. Installs the schema first.
 */
export async function seedGraphile(url: string, n: number, aggregates: number): Promise<void> {
  const utils: WorkerUtils = await makeWorkerUtils({ connectionString: url, schema: GRAPHILE_SCHEMA });
  try {
    await utils.migrate();
    const chunk = 5000;
    for (let from = 0; from < n; from += chunk) {
      const specs = [];
      for (let i = from; i < Math.min(n, from + chunk); i++) {
        specs.push({
          identifier: TASK,
          payload: {
            aggregate_id: `a${i % aggregates}`,
            event_type: 'bench.event',
            payload: { n: Math.floor(i / aggregates), filepath: `/data/file-${i}`, filesize: 1024 + (i % 4096) },
          },
          maxAttempts: 1,
        });
      }
      await utils.addJobs(specs);
    }
  } finally {
    await utils.release();
  }
}

/**
 * graphile-worker as a relay a user might run: the runner with its local queue (`localQueueSize` jobs locked and
 * fetched per round trip), `concurrency` jobs at once, completions batched (`completeJobBatchDelay: 0`), and a task
 * that LPUSHes its job to Redis (ioredis pipelines the pushes of jobs running in the same tick). No dedup marker and
 * no per-aggregate order. Resolves with the seconds until the `n`-th task returned.
 */
export async function timeGraphileDrain(options: {
  url: string;
  redis: Redis;
  list: string;
  n: number;
  concurrency: number;
  localQueueSize: number;
}): Promise<number> {
  let done = 0;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const { redis, list } = options;
  const started = performance.now();
  const runner: Runner = await run({
    connectionString: options.url,
    schema: GRAPHILE_SCHEMA,
    concurrency: options.concurrency,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: quietLogger(),
    preset: {
      worker: {
        localQueue: { size: options.localQueueSize },
        completeJobBatchDelay: 0,
      },
    },
    taskList: {
      [TASK]: async (payload, helpers) => {
        await redis.lpush(list, JSON.stringify({ id: helpers.job.id, ...(payload as object) }));
        if (++done >= options.n) finish();
      },
    },
  });
  try {
    await finished;
    return (performance.now() - started) / 1000;
  } finally {
    await runner.stop();
  }
}

/** graphile-worker logs every job at info; the bench keeps its output to the table. */
function quietLogger(): Logger {
  return new Logger(() => () => {});
}
