import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { IdempotencyService } from '../src/idempotency/service.js';
import type { BenchOptions, Row } from './lib/report.js';
import { benchPrefix, createBenchDatabase, deleteRedisPrefix, REDIS_URL } from './lib/services.js';
import { distribution, round } from './lib/stats.js';

export interface DuplicateFigure {
  checks: number;
  hotCacheMs: { p50: number; p99: number };
  postgresOnlyMs: { p50: number; p99: number };
  firstRunMs: { p50: number; p99: number };
}

/**
 * Duplicate check: `processWithIdempotency` on a key that already completed, answered by the Redis hot cache (the
 * default store) and by Postgres alone (`hot_cache: false`), and on a fresh key (claim, run a no-op processor,
 * complete). One caller at a time, so each figure is one call's latency.
 */
export async function duplicateBench(opts: BenchOptions): Promise<{ rows: Row[]; figure: DuplicateFigure }> {
  const db = await createBenchDatabase('dup', 4);
  const redis = new Redis(REDIS_URL);
  const prefix = benchPrefix('dup');
  const config = (hotCache: boolean) =>
    configFromObject({
      database: { url: db.url },
      redis: { url: REDIS_URL },
      idempotency: { key_prefix: prefix, storage: { type: 'database', database: { hot_cache: hotCache } } },
    });
  const hot = new IdempotencyService({ config: config(true), pool: db.pool, redis });
  const cold = new IdempotencyService({ config: config(false), pool: db.pool });
  try {
    const n = opts.checks;
    const key = (i: number) => hot.generateIdempotencyKey('bench', '', `job-${i}`);
    const time = async (fn: (i: number) => Promise<unknown>, count: number) => {
      const out: number[] = [];
      for (let i = 0; i < count; i++) {
        const t = performance.now();
        await fn(i);
        out.push(performance.now() - t);
      }
      const d = distribution(out);
      return { p50: round(d.p50, 3), p99: round(d.p99, 3) };
    };
    // First runs also create the keys the duplicate checks use (and warm the connections).
    await time((i) => hot.processWithIdempotency(key(n + i), () => ({ ok: true })), 200);
    const firstRunMs = await time((i) => hot.processWithIdempotency(key(i), () => ({ ok: true, i })), n);
    const dupOf = (i: number) => key((i * 7919) % n);
    const hotCacheMs = await time(async (i) => {
      const r = await hot.processWithIdempotency(dupOf(i), () => ({ ok: false }));
      if (!r.duplicate) throw new Error('expected a duplicate');
    }, n);
    const postgresOnlyMs = await time(async (i) => {
      const r = await cold.processWithIdempotency(dupOf(i), () => ({ ok: false }));
      if (!r.duplicate) throw new Error('expected a duplicate');
    }, n);
    const figure: DuplicateFigure = { checks: n, hotCacheMs, postgresOnlyMs, firstRunMs };
    opts.progress(`duplicate: hot p50 ${hotCacheMs.p50} ms, Postgres p50 ${postgresOnlyMs.p50} ms`);
    const rows: Row[] = [
      {
        benchmark: 'duplicate check, Redis hot cache',
        figure: `p50 ${hotCacheMs.p50} / p99 ${hotCacheMs.p99} ms`,
        baseline: `Postgres alone p50 ${postgresOnlyMs.p50} / p99 ${postgresOnlyMs.p99} ms`,
        ratio: `${round(hotCacheMs.p50 / postgresOnlyMs.p50)} of Postgres`,
        target: 'p50 <= 0.3 ms',
        met: hotCacheMs.p50 <= 0.3,
      },
      {
        benchmark: 'first run (claim + no-op processor + complete)',
        figure: `p50 ${firstRunMs.p50} / p99 ${firstRunMs.p99} ms`,
        baseline: '-',
        ratio: '-',
        target: 'info',
        met: undefined,
      },
    ];
    return { rows, figure };
  } finally {
    await hot.close();
    await cold.close();
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
    await db.close();
  }
}
