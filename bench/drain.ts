import { Redis } from 'ioredis';
import { seedPgBoss, startPgBoss, timeNaiveRelay, timePgBossDrain, timeSqlCeiling } from './lib/baselines.js';
import { relayConfig, seedPending, timeRelayDrain } from './lib/outbox.js';
import type { BenchOptions, Row } from './lib/report.js';
import { benchPrefix, createBenchDatabase, deleteRedisPrefix, REDIS_URL } from './lib/services.js';
import { round } from './lib/stats.js';

/** A relay configuration the drain measures; `undefined` keeps the config default. */
interface RelayShape {
  label: string;
  batchSize: number | undefined;
  loops: number;
}

/** What a user who changes nothing gets, and the settings the issue's targets name. */
const RELAY_SHAPES: RelayShape[] = [
  { label: 'defaults', batchSize: undefined, loops: 1 },
  { label: 'batch 500', batchSize: 500, loops: 1 },
  { label: 'batch 500, 2 loops', batchSize: 500, loops: 2 },
];
/** The baselines' batch size: the issue's references all claim 500 rows at a time. */
const BASELINE_BATCH = 500;
/** pg-boss's own fetch size in the issue's comparison. */
const PGBOSS_BATCH = 100;

export interface DrainFigure {
  shape: 'spread' | 'hot';
  aggregates: number;
  events: number;
  sqlCeilingPerSec: number;
  /** naive pipelined relay, batch 500, by loop count */
  naivePerSec: Record<number, number>;
  pgBossPerSec: number | undefined;
  relays: {
    label: string;
    batchSize: number | undefined;
    loops: number;
    perSec: number;
    vsNaive: number;
    vsCeiling: number;
  }[];
}

/**
 * Drain `events` pending events spread over `aggregates` aggregates, and all in one hot aggregate, with the relay at
 * its defaults, at batch 500, and at batch 500 with 2 loops; beside, in the same run and on the same table: the
 * one-statement SQL ceiling, the naive pipelined relay (1 and 2 loops) and a pg-boss relay (spread only).
 */
export async function drainBench(opts: BenchOptions): Promise<{ rows: Row[]; figures: DrainFigure[] }> {
  const db = await createBenchDatabase('drain', 8);
  const redis = new Redis(REDIS_URL);
  const prefix = benchPrefix('drain');
  const figures: DrainFigure[] = [];
  const reseed = async (aggregates: number) => {
    await db.pool.query('TRUNCATE exactly_once_outbox');
    await seedPending(db.pool, opts.events, aggregates);
    await db.pool.query('VACUUM ANALYZE exactly_once_outbox');
  };
  const rate = (seconds: number) => Math.round(opts.events / seconds);
  try {
    for (const shape of ['spread', 'hot'] as const) {
      const aggregates = shape === 'spread' ? opts.aggregates : 1;
      await reseed(aggregates);
      const sqlCeilingPerSec = rate(await timeSqlCeiling({ url: db.url, batchSize: BASELINE_BATCH }));
      const naivePerSec: Record<number, number> = {};
      for (const loops of [1, 2]) {
        await reseed(aggregates);
        naivePerSec[loops] = rate(
          await timeNaiveRelay({ url: db.url, redis, list: `${prefix}naive`, loops, batchSize: BASELINE_BATCH }),
        );
        await deleteRedisPrefix(redis, prefix);
      }
      const relays: DrainFigure['relays'] = [];
      for (const r of RELAY_SHAPES) {
        await reseed(aggregates);
        const config = relayConfig(db.url, REDIS_URL, prefix, {
          concurrency: r.loops,
          poll_interval: '100ms',
          ...(r.batchSize === undefined ? {} : { batch_size: r.batchSize }),
        });
        const perSec = rate(await timeRelayDrain({ config, pool: db.pool, redis, n: opts.events }));
        await deleteRedisPrefix(redis, prefix);
        const naive = naivePerSec[r.loops] as number;
        relays.push({
          label: r.label,
          batchSize: config.outbox.batchSize,
          loops: r.loops,
          perSec,
          vsNaive: round(perSec / naive),
          vsCeiling: round(perSec / sqlCeilingPerSec),
        });
        opts.progress(
          `drain ${shape} ${r.label}: relay ${perSec}/s; naive x${r.loops} ${naive}/s; ceiling ${sqlCeilingPerSec}/s`,
        );
      }
      let pgBossPerSec: number | undefined;
      if (shape === 'spread') pgBossPerSec = await pgBossDrain(db, redis, prefix, opts, aggregates);
      figures.push({ shape, aggregates, events: opts.events, sqlCeilingPerSec, naivePerSec, pgBossPerSec, relays });
    }
  } finally {
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
    await db.close();
  }
  return { rows: drainRows(figures), figures };
}

async function pgBossDrain(
  db: Awaited<ReturnType<typeof createBenchDatabase>>,
  redis: Redis,
  prefix: string,
  opts: BenchOptions,
  aggregates: number,
): Promise<number> {
  await db.pool.query('TRUNCATE exactly_once_outbox');
  const boss = await startPgBoss(db.url, 3);
  try {
    await seedPgBoss(boss, db.url, opts.events, aggregates);
    await db.pool.query('VACUUM ANALYZE');
    const seconds = await timePgBossDrain({
      boss,
      redis,
      list: `${prefix}pgboss`,
      workers: 1,
      batchSize: PGBOSS_BATCH,
      n: opts.events,
    });
    return Math.round(opts.events / seconds);
  } finally {
    await boss.stop({ graceful: false });
    await db.pool.query('DROP SCHEMA IF EXISTS pgboss_bench CASCADE');
    await deleteRedisPrefix(redis, prefix);
  }
}

function drainRows(figures: DrainFigure[]): Row[] {
  const rows: Row[] = [];
  const spread = figures.find((f) => f.shape === 'spread');
  for (const f of figures) {
    const where = f.shape === 'spread' ? `${f.aggregates} aggregates` : '1 hot aggregate';
    rows.push({
      benchmark: `drain ${where}: SQL ceiling (1 statement, batch ${BASELINE_BATCH}, 1 connection)`,
      figure: `${f.sqlCeilingPerSec} ev/s`,
      baseline: `naive relay x1 ${f.naivePerSec[1]} ev/s, x2 ${f.naivePerSec[2]} ev/s`,
      ratio: `naive x1 = ${round((f.naivePerSec[1] as number) / f.sqlCeilingPerSec)} of SQL`,
      target: 'reference',
      met: undefined,
    });
    if (f.pgBossPerSec !== undefined) {
      rows.push({
        benchmark: `drain ${where}: pg-boss 12 relay (fetch ${PGBOSS_BATCH}, pipelined LPUSH, complete)`,
        figure: `${f.pgBossPerSec} ev/s`,
        baseline: `naive x1 ${f.naivePerSec[1]} ev/s; SQL ${f.sqlCeilingPerSec} ev/s`,
        ratio: `${round(f.pgBossPerSec / (f.naivePerSec[1] as number))} of naive; ${round(f.pgBossPerSec / f.sqlCeilingPerSec)} of SQL`,
        target: 'reference',
        met: undefined,
      });
    }
    for (const r of f.relays) {
      const hotVsSpread = f.shape === 'hot' ? spread?.relays.find((s) => s.label === r.label)?.perSec : undefined;
      const target =
        f.shape === 'hot'
          ? '>= 0.5x spread (same settings)'
          : r.label === 'defaults'
            ? '>= 0.5x naive'
            : r.loops === 1
              ? '>= 1.0x naive'
              : '>= 0.6 of SQL';
      const met =
        f.shape === 'hot'
          ? hotVsSpread === undefined
            ? undefined
            : r.perSec / hotVsSpread >= 0.5
          : r.label === 'defaults'
            ? r.vsNaive >= 0.5
            : r.loops === 1
              ? r.vsNaive >= 1
              : r.vsCeiling >= 0.6;
      rows.push({
        benchmark: `drain ${where}: relay ${r.label} (batch ${r.batchSize}, ${r.loops} loop${r.loops > 1 ? 's' : ''})`,
        figure: `${r.perSec} ev/s`,
        baseline: `naive x${r.loops} ${f.naivePerSec[r.loops]} ev/s; SQL ${f.sqlCeilingPerSec} ev/s${f.pgBossPerSec ? `; pg-boss ${f.pgBossPerSec} ev/s` : ''}`,
        ratio:
          `${r.vsNaive}x naive; ${r.vsCeiling} of SQL` +
          (f.pgBossPerSec ? `; ${round(r.perSec / f.pgBossPerSec)}x pg-boss` : '') +
          (hotVsSpread ? `; ${round(r.perSec / hotVsSpread)}x spread` : ''),
        target,
        met,
      });
    }
  }
  return rows;
}
