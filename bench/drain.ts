import { Redis } from 'ioredis';
import { seedPgBoss, startPgBoss, timePgBossDrain, timeSqlCeiling } from './lib/baselines.js';
import { relayConfig, seedPending, timeRelayDrain } from './lib/outbox.js';
import type { BenchOptions, Row } from './lib/report.js';
import { benchPrefix, createBenchDatabase, deleteRedisPrefix, REDIS_URL } from './lib/services.js';
import { round } from './lib/stats.js';

export interface DrainFigure {
  shape: 'spread' | 'hot';
  aggregates: number;
  workers: number;
  events: number;
  relayPerSec: number;
  sqlCeilingPerSec: number;
  pgBossPerSec: number;
  /** relay / SQL ceiling */
  vsCeiling: number;
  /** relay / pg-boss */
  vsPgBoss: number;
}

/**
 * Drain: N pending events over 1,000 aggregates ("spread") and all in one aggregate ("hot"), drained by 1, 2 and 4
 * workers. Relay workers are claim loops of one relay (`outbox.concurrency`) in this process; the SQL ceiling and
 * pg-boss use the same number of connections and loops, the same batch size and the same commit durability.
 */
export async function drainBench(opts: BenchOptions): Promise<{ rows: Row[]; figures: DrainFigure[] }> {
  const maxWorkers = Math.max(...opts.workers);
  const db = await createBenchDatabase('drain', maxWorkers + 4);
  const redis = new Redis(REDIS_URL);
  const prefix = benchPrefix('drain');
  const figures: DrainFigure[] = [];
  const reseed = async (aggregates: number) => {
    await db.pool.query('TRUNCATE exactly_once_outbox');
    await seedPending(db.pool, opts.events, aggregates);
    await db.pool.query('VACUUM ANALYZE exactly_once_outbox');
  };
  try {
    for (const shape of ['spread', 'hot'] as const) {
      const aggregates = shape === 'spread' ? opts.aggregates : 1;
      for (const workers of opts.workers) {
        await reseed(aggregates);
        const sqlSeconds = await timeSqlCeiling({
          url: db.url,
          workers,
          batchSize: opts.batchSize,
          synchronousCommit: 'on',
        });
        await reseed(aggregates);
        const config = relayConfig(db.url, REDIS_URL, prefix, {
          concurrency: workers,
          batch_size: opts.batchSize,
          poll_interval: '100ms',
        });
        const relaySeconds = await timeRelayDrain({ config, pool: db.pool, redis, n: opts.events });
        await deleteRedisPrefix(redis, prefix);

        await db.pool.query('TRUNCATE exactly_once_outbox');
        const boss = await startPgBoss(db.url, workers + 2);
        let bossSeconds: number;
        try {
          await seedPgBoss(boss, db.url, opts.events, aggregates);
          await db.pool.query('VACUUM ANALYZE');
          bossSeconds = await timePgBossDrain({
            boss,
            redis,
            list: `${prefix}pgboss`,
            workers,
            batchSize: opts.batchSize,
            n: opts.events,
          });
        } finally {
          await boss.stop({ graceful: false });
          await db.pool.query('DROP SCHEMA IF EXISTS pgboss_bench CASCADE');
          await deleteRedisPrefix(redis, prefix);
        }
        const f: DrainFigure = {
          shape,
          aggregates,
          workers,
          events: opts.events,
          relayPerSec: Math.round(opts.events / relaySeconds),
          sqlCeilingPerSec: Math.round(opts.events / sqlSeconds),
          pgBossPerSec: Math.round(opts.events / bossSeconds),
          vsCeiling: round(sqlSeconds / relaySeconds),
          vsPgBoss: round(bossSeconds / relaySeconds),
        };
        figures.push(f);
        opts.progress(
          `drain ${shape} x${workers}: relay ${f.relayPerSec}/s, SQL ${f.sqlCeilingPerSec}/s, pg-boss ${f.pgBossPerSec}/s`,
        );
      }
    }
  } finally {
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
    await db.close();
  }
  const rows: Row[] = figures.map((f) => ({
    benchmark: `drain, ${f.shape === 'spread' ? `${f.aggregates} aggregates` : '1 hot aggregate'}, ${f.workers} worker${f.workers > 1 ? 's' : ''}`,
    figure: `${f.relayPerSec} ev/s`,
    baseline: `SQL ${f.sqlCeilingPerSec} ev/s; pg-boss ${f.pgBossPerSec} ev/s`,
    ratio: `${f.vsCeiling} of SQL; ${f.vsPgBoss}x pg-boss`,
    target: f.shape === 'spread' ? '>= 0.60 of SQL, > 1x pg-boss' : 'info (one aggregate is serial by design)',
    met: f.shape === 'spread' ? f.vsCeiling >= 0.6 && f.vsPgBoss > 1 : undefined,
  }));
  return { rows, figures };
}
