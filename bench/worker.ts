import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { IdempotencyService } from '../src/idempotency/service.js';
import { createWorker } from '../src/worker/create-worker.js';
import type { BenchOptions, Row } from './lib/report.js';
import { benchPrefix, createBenchDatabase, deleteRedisPrefix, REDIS_URL } from './lib/services.js';
import { round } from './lib/stats.js';

export interface WorkerFigure {
  jobs: number;
  concurrency: number;
  /** jobs/s of each run */
  loop: number;
  workerMemoryStore: number;
  loopWithIdempotency: number;
  workerDefaultStore: number;
}

const CONCURRENCY = 16;
const BLOCK_S = 0.2;

/**
 * Worker throughput: a no-op handler in `createWorker` against a hand-written reliable-queue loop (`BLMOVE` into a
 * processing list, `LREM`), the same number of jobs, the same concurrency (16 loops, each on its own connection, as
 * blocking pops need), in one run. Twice: with the in-process (`memory`) idempotency store, so the figure is the
 * worker's own machinery (priority pop script, completion script, completed list, heartbeat, metrics); and with the
 * default store (Postgres + Redis hot cache) against the same loop calling `processWithIdempotency` itself, the
 * README's former hand-made worker.
 */
export async function workerBench(opts: BenchOptions): Promise<{ rows: Row[]; figure: WorkerFigure }> {
  const db = await createBenchDatabase('worker', CONCURRENCY + 4);
  const redis = new Redis(REDIS_URL);
  const prefix = benchPrefix('worker');
  const jobs = opts.events;
  const tree = (type: 'memory' | 'database') => ({
    database: { url: db.url },
    redis: { url: REDIS_URL },
    outbox: { queue_pattern: `${prefix}jobqueue:{priority}_priority` },
    idempotency: {
      key_prefix: `${prefix}idem:${type}:`,
      storage: { type, memory: { max_keys: jobs * 2 }, database: { max_connections: CONCURRENCY + 2 } },
    },
    worker: { key_prefix: `${prefix}jobqueue:`, concurrency: CONCURRENCY },
  });
  const low = `${prefix}jobqueue:low_priority`;
  const fill = async () => {
    for (let i = 0; i < jobs; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, jobs - i) }, () => jobText(randomUUID()));
      await redis.lpush(low, ...batch);
    }
  };
  try {
    const loop = async (withIdempotency: IdempotencyService | undefined) => {
      await fill();
      return rate(jobs, () => handWrittenLoop(low, `${prefix}hand:`, jobs, withIdempotency));
    };
    const worker = async (type: 'memory' | 'database') => {
      await fill();
      let done = 0;
      let finished: () => void = () => {};
      const all = new Promise<void>((r) => {
        finished = r;
      });
      const w = createWorker({
        config: configFromObject(tree(type)),
        process: () => {
          if (++done === jobs) finished();
        },
      });
      await w.start();
      const t = performance.now();
      await all;
      // The last acknowledgements land right after the handler returns.
      while (w.stats().processed < jobs) await new Promise((r) => setTimeout(r, 1));
      const seconds = (performance.now() - t) / 1000;
      await w.stop();
      return jobs / seconds;
    };
    const loopRate = await loop(undefined);
    const workerMemory = await worker('memory');
    const service = new IdempotencyService({ config: configFromObject(tree('database')), redis });
    const loopIdem = await loop(service);
    await service.close();
    const workerDefault = await worker('database');
    const figure: WorkerFigure = {
      jobs,
      concurrency: CONCURRENCY,
      loop: Math.round(loopRate),
      workerMemoryStore: Math.round(workerMemory),
      loopWithIdempotency: Math.round(loopIdem),
      workerDefaultStore: Math.round(workerDefault),
    };
    opts.progress(`worker: ${JSON.stringify(figure)}`);
    const fmt = (n: number) => `${Math.round(n).toLocaleString('en-US')} jobs/s`;
    const rows: Row[] = [
      {
        benchmark: `worker, no-op handler (memory idempotency store), ${jobs} jobs, concurrency ${CONCURRENCY}`,
        figure: fmt(workerMemory),
        baseline: `BLMOVE + LREM loop x${CONCURRENCY}: ${fmt(loopRate)}`,
        ratio: `${round(workerMemory / loopRate)}x`,
        target: '>= 0.8x',
        met: workerMemory / loopRate >= 0.8,
      },
      {
        benchmark: 'worker, no-op handler (default store: Postgres + Redis hot cache)',
        figure: fmt(workerDefault),
        baseline: `BLMOVE + processWithIdempotency + LREM loop x${CONCURRENCY}: ${fmt(loopIdem)}`,
        ratio: `${round(workerDefault / loopIdem)}x`,
        target: '>= 0.8x',
        met: workerDefault / loopIdem >= 0.8,
      },
    ];
    return { rows, figure };
  } finally {
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
    await db.close();
  }
}

/** `concurrency` loops, each on its own connection: BLMOVE into its processing list, the no-op (or the key), LREM. */
async function handWrittenLoop(
  queue: string,
  processingPrefix: string,
  jobs: number,
  idempotency: IdempotencyService | undefined,
): Promise<void> {
  let done = 0;
  const loops = Array.from({ length: CONCURRENCY }, async (_, i) => {
    const conn = new Redis(REDIS_URL);
    const processing = `${processingPrefix}${i}`;
    try {
      while (done < jobs) {
        const raw = await conn.blmove(queue, processing, 'RIGHT', 'LEFT', BLOCK_S);
        if (raw === null) continue;
        if (idempotency) {
          const job = JSON.parse(raw) as { id: string; tenant_id: string };
          const key = idempotency.generateIdempotencyKey('bench', job.tenant_id, job.id);
          await idempotency.processWithIdempotency(key, () => undefined);
        }
        await conn.lrem(processing, 1, raw);
        done++;
      }
    } finally {
      conn.disconnect();
    }
  });
  await Promise.all(loops);
}

async function rate(jobs: number, run: () => Promise<void>): Promise<number> {
  const t = performance.now();
  await run();
  return jobs / ((performance.now() - t) / 1000);
}

function jobText(id: string): string {
  return JSON.stringify({
    id,
    filepath: '',
    filesize: 0,
    priority: 'low',
    retries: 0,
    creation_time: new Date().toISOString(),
    trace_id: '',
    span_id: '',
    event_type: 'bench',
    aggregate_type: 'bench',
    aggregate_id: id,
    tenant_id: '',
    payload: { n: 1 },
    headers: {},
  });
}
