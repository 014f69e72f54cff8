import { Redis } from 'ioredis';
import {
  seedNaiveOutbox,
  seedPgBoss,
  startPgBoss,
  timeNaiveRelay,
  timePgBossDrain,
  timeSqlCeiling,
} from './lib/baselines.js';
import { type CpuSplit, cpuText, withCpu } from './lib/cpu.js';
import { GRAPHILE_SCHEMA, seedGraphile, timeGraphileDrain } from './lib/graphile.js';
import { relayConfig, seedPending, timeRelayDrain } from './lib/outbox.js';
import { timeRelayProcesses } from './lib/relay-processes.js';
import type { BenchOptions, Row } from './lib/report.js';
import { benchPrefix, createBenchDatabase, deleteRedisPrefix, REDIS_URL } from './lib/services.js';
import { round } from './lib/stats.js';

/** A relay configuration the drain measures; `undefined` keeps the config default. */
interface RelayShape {
  label: string;
  batchSize: number | undefined;
  loops: number;
  /** relay daemons (the CLI, child processes), each with `loops` claim loops; 0: one Relay in the bench process */
  processes: number;
}

/** What a user who changes nothing gets, and the settings the targets name. */
const RELAY_SHAPES: RelayShape[] = [
  { label: 'defaults', batchSize: undefined, loops: 1, processes: 0 },
  { label: 'batch 500', batchSize: 500, loops: 1, processes: 0 },
  { label: 'batch 500, 2 loops', batchSize: 500, loops: 2, processes: 0 },
  { label: 'batch 500, 2 processes', batchSize: 500, loops: 1, processes: 2 },
];
/** The baselines' batch size: the issue's references all claim 500 rows at a time. */
const BASELINE_BATCH = 500;
/** pg-boss's own fetch size in the comparison. */
const PGBOSS_BATCH = 100;
/** graphile-worker's local queue in the comparison, and jobs run at once (as many: with 10 it drained 3x slower). */
const GRAPHILE_QUEUE = 100;
const GRAPHILE_CONCURRENCY = 100;

export interface DrainFigure {
  shape: 'spread' | 'hot';
  aggregates: number;
  events: number;
  /** drains per relay row (and as many of the naive relay, interleaved) */
  rounds: number;
  sqlCeilingPerSec: number;
  /** naive pipelined relay, batch 500, by loop count (the first run of each; every relay row has its own) */
  naivePerSec: Record<number, number>;
  pgBossPerSec: number | undefined;
  graphilePerSec: number | undefined;
  relays: {
    label: string;
    batchSize: number | undefined;
    loops: number;
    processes: number;
    /** median of `opts.rounds` drains */
    perSec: number;
    /** (max - min) / median of those drains */
    spread: number;
    /** the naive relay with as many connections, median of the rounds interleaved with this row's */
    naivePerSec: number;
    naiveSpread: number;
    vsNaive: number;
    vsCeiling: number;
    /** CPU per 1,000 events of this drain and of the naive relay run just before it (in-process rows only) */
    cpu?: { relay: CpuSplit; naive: CpuSplit };
  }[];
}

/**
 * Drain `events` pending events spread over `aggregates` aggregates, and all in one hot aggregate, with the relay at
 * its defaults, at batch 500, and at batch 500 with 2 loops; beside, in the same run and with the same rows: the
 * one-statement SQL ceiling and the naive pipelined relay (1 and 2 loops), both on a row-state table that flips
 * `status` per event (what a hand-written relay does), pg-boss and graphile-worker (spread only).
 */
export async function drainBench(opts: BenchOptions): Promise<{ rows: Row[]; figures: DrainFigure[] }> {
  const db = await createBenchDatabase('drain', 8);
  const redis = new Redis(REDIS_URL);
  const prefix = benchPrefix('drain');
  const figures: DrainFigure[] = [];
  const reseed = async (aggregates: number) => {
    await db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
    await seedPending(db.pool, opts.events, aggregates);
    await db.pool.query('VACUUM ANALYZE exactly_once_outbox_events');
  };
  const rate = (seconds: number) => Math.round(opts.events / seconds);
  try {
    for (const shape of ['spread', 'hot'] as const) {
      const aggregates = shape === 'spread' ? opts.aggregates : 1;
      await seedNaiveOutbox(db.pool, opts.events, aggregates);
      const sqlCeilingPerSec = rate(await timeSqlCeiling({ url: db.url, batchSize: BASELINE_BATCH }));
      const naive = async (loops: number) => {
        await seedNaiveOutbox(db.pool, opts.events, aggregates);
        const { result: seconds, cpuPer1000 } = await withCpu(redis, opts.events, () =>
          timeNaiveRelay({ url: db.url, redis, list: `${prefix}naive`, loops, batchSize: BASELINE_BATCH }),
        );
        await deleteRedisPrefix(redis, prefix);
        return { perSec: rate(seconds), cpu: cpuPer1000 };
      };
      const naivePerSec: Record<number, number> = {};
      const relays: DrainFigure['relays'] = [];
      for (const r of RELAY_SHAPES) {
        const connections = r.loops * Math.max(1, r.processes);
        const outbox = {
          concurrency: r.loops,
          poll_interval: '100ms',
          ...(r.batchSize === undefined ? {} : { batch_size: r.batchSize }),
        };
        const config = relayConfig(db.url, REDIS_URL, prefix, outbox);
        // Rounds interleaved (naive, relay, naive, relay, ...): the machine drifts within a run, and a single drain of
        // 20,000 events moves by 10% or more from one round to the next; the medians and their spread are reported.
        const relayRuns: number[] = [];
        const naiveRuns: number[] = [];
        let relayCpu: CpuSplit | undefined;
        let naiveCpu: CpuSplit | undefined;
        for (let i = 0; i < opts.rounds; i++) {
          const n = await naive(connections);
          naiveRuns.push(n.perSec);
          naiveCpu ??= n.cpu;
          await reseed(aggregates);
          const seconds =
            r.processes > 0
              ? await timeRelayProcesses({
                  dbUrl: db.url,
                  redisUrl: REDIS_URL,
                  redis,
                  prefix,
                  n: opts.events,
                  processes: r.processes,
                  outbox,
                })
              : await withCpu(redis, opts.events, () =>
                  timeRelayDrain({ config, pool: db.pool, redis, n: opts.events }),
                ).then(({ result, cpuPer1000 }) => {
                  relayCpu ??= cpuPer1000;
                  return result;
                });
          relayRuns.push(rate(seconds));
          await deleteRedisPrefix(redis, prefix);
        }
        const perSec = median(relayRuns);
        const naiveNow = median(naiveRuns);
        naivePerSec[connections] ??= naiveNow;
        relays.push({
          label: r.label,
          batchSize: config.outbox.batchSize,
          loops: r.loops,
          processes: r.processes,
          perSec,
          spread: spreadOf(relayRuns),
          naivePerSec: naiveNow,
          naiveSpread: spreadOf(naiveRuns),
          vsNaive: round(perSec / naiveNow),
          vsCeiling: round(perSec / sqlCeilingPerSec),
          ...(relayCpu && naiveCpu ? { cpu: { relay: relayCpu, naive: naiveCpu } } : {}),
        });
        opts.progress(
          `drain ${shape} ${r.label}: relay ${relayRuns.join('/')}/s; naive x${connections} ${naiveRuns.join('/')}/s; ceiling ${sqlCeilingPerSec}/s`,
        );
      }
      let pgBossPerSec: number | undefined;
      let graphilePerSec: number | undefined;
      if (shape === 'spread') {
        pgBossPerSec = await pgBossDrain(db, redis, prefix, opts, aggregates);
        graphilePerSec = await graphileDrain(db, redis, prefix, opts, aggregates);
        opts.progress(`drain ${shape}: pg-boss ${pgBossPerSec}/s; graphile-worker ${graphilePerSec}/s`);
      }
      figures.push({
        shape,
        aggregates,
        events: opts.events,
        rounds: opts.rounds,
        sqlCeilingPerSec,
        naivePerSec,
        pgBossPerSec,
        graphilePerSec,
        relays,
      });
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
  await db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
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

async function graphileDrain(
  db: Awaited<ReturnType<typeof createBenchDatabase>>,
  redis: Redis,
  prefix: string,
  opts: BenchOptions,
  aggregates: number,
): Promise<number> {
  await db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
  try {
    await seedGraphile(db.url, opts.events, aggregates);
    await db.pool.query('VACUUM ANALYZE');
    const seconds = await timeGraphileDrain({
      url: db.url,
      redis,
      list: `${prefix}graphile`,
      n: opts.events,
      concurrency: GRAPHILE_CONCURRENCY,
      localQueueSize: GRAPHILE_QUEUE,
    });
    return Math.round(opts.events / seconds);
  } finally {
    await db.pool.query(`DROP SCHEMA IF EXISTS ${GRAPHILE_SCHEMA} CASCADE`);
    await deleteRedisPrefix(redis, prefix);
  }
}

const total = (c: CpuSplit) => c.postgres + c.redis + c.node;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : Math.round(((s[mid - 1] as number) + (s[mid] as number)) / 2);
}

function spreadOf(xs: number[]): number {
  return round((Math.max(...xs) - Math.min(...xs)) / Math.max(1, median(xs)), 3);
}

function drainRows(figures: DrainFigure[]): Row[] {
  const rows: Row[] = [];
  const spread = figures.find((f) => f.shape === 'spread');
  for (const f of figures) {
    const where = f.shape === 'spread' ? `${f.aggregates} aggregates` : '1 hot aggregate';
    const naive1 = f.naivePerSec[1] as number;
    rows.push({
      benchmark: `drain ${where}: SQL ceiling (1 statement, batch ${BASELINE_BATCH}, 1 connection)`,
      figure: `${f.sqlCeilingPerSec} ev/s`,
      baseline: `naive relay x1 ${naive1} ev/s, x2 ${f.naivePerSec[2]} ev/s`,
      ratio: `naive x1 = ${round(naive1 / f.sqlCeilingPerSec)} of SQL`,
      target: 'reference',
      met: undefined,
    });
    const queues: [string, number | undefined][] = [
      [`pg-boss 12 relay (fetch ${PGBOSS_BATCH}, pipelined LPUSH, complete)`, f.pgBossPerSec],
      [
        `graphile-worker 0.18 (local queue ${GRAPHILE_QUEUE}, ${GRAPHILE_CONCURRENCY} jobs at once, LPUSH per job)`,
        f.graphilePerSec,
      ],
    ];
    for (const [label, perSec] of queues) {
      if (perSec === undefined) continue;
      rows.push({
        benchmark: `drain ${where}: ${label}`,
        figure: `${perSec} ev/s`,
        baseline: `naive x1 ${naive1} ev/s; SQL ${f.sqlCeilingPerSec} ev/s`,
        ratio: `${round(perSec / naive1)} of naive; ${round(perSec / f.sqlCeilingPerSec)} of SQL`,
        target: 'reference',
        met: undefined,
      });
    }
    for (const r of f.relays) {
      const hotVsSpread = f.shape === 'hot' ? spread?.relays.find((s) => s.label === r.label)?.perSec : undefined;
      const parallel = r.loops > 1 || r.processes > 1;
      const target =
        f.shape === 'hot'
          ? '>= 0.5x spread (same settings)'
          : r.label === 'defaults'
            ? '>= 1.2x naive'
            : parallel
              ? '>= 0.6 of SQL'
              : '>= 1.0x naive';
      const met =
        f.shape === 'hot'
          ? hotVsSpread === undefined
            ? undefined
            : r.perSec / hotVsSpread >= 0.5
          : r.label === 'defaults'
            ? r.vsNaive >= 1.2
            : parallel
              ? r.vsCeiling >= 0.6
              : r.vsNaive >= 1;
      const connections = r.loops * Math.max(1, r.processes);
      const how =
        r.processes > 0
          ? `${r.processes} CLI processes x ${r.loops} loop`
          : `${r.loops} loop${r.loops > 1 ? 's' : ''} in-process`;
      const others = [
        f.pgBossPerSec ? `; pg-boss ${f.pgBossPerSec}` : '',
        f.graphilePerSec ? `; graphile ${f.graphilePerSec}` : '',
      ].join('');
      rows.push({
        benchmark: `drain ${where}: relay ${r.label} (batch ${r.batchSize}, ${how})`,
        figure: `${r.perSec} ev/s (median of ${f.rounds}, spread ${round(r.spread * 100, 1)}%)`,
        baseline: `naive x${connections} ${r.naivePerSec} (spread ${round(r.naiveSpread * 100, 1)}%); SQL ${f.sqlCeilingPerSec}${others} ev/s`,
        ratio:
          `${r.vsNaive}x naive; ${r.vsCeiling} of SQL` +
          (f.pgBossPerSec ? `; ${round(r.perSec / f.pgBossPerSec)}x pg-boss` : '') +
          (f.graphilePerSec ? `; ${round(r.perSec / f.graphilePerSec)}x graphile` : '') +
          (hotVsSpread ? `; ${round(r.perSec / hotVsSpread)}x spread` : ''),
        target,
        met,
      });
      if (r.cpu && r.label === 'batch 500') {
        rows.push({
          benchmark: `drain ${where}: CPU per 1,000 events, relay ${r.label} (1 loop) vs the naive relay before it`,
          figure: cpuText(r.cpu.relay),
          baseline: `naive x1 ${cpuText(r.cpu.naive)}`,
          ratio: `${round(total(r.cpu.relay) / total(r.cpu.naive))}x the naive relay's CPU`,
          target: 'info (where the time goes; Postgres: every postgres process on the machine)',
          met: undefined,
        });
      }
    }
  }
  return rows;
}
