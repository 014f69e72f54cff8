import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import pg from 'pg';
import { kyselyFromPool, migrateToLatest } from '../../src/db/migrator.js';
import { outboxBacklog } from '../../src/outbox/postgres/inspect.js';
import type { NewOutboxEvent } from '../../src/outbox/types.js';
import { storeInOutbox } from '../../src/outbox/writer.js';
import { spawnRelay, writeConfigFile } from '../../test/helpers/relay-process.js';
import { type OwnedCluster, startOwnedCluster } from '../soak/postgres-cluster.js';
import { benchPrefix, deleteRedisPrefix, REDIS_URL } from './services.js';
import { type Distribution, distribution, round, sleep } from './stats.js';

export interface HeldSnapshotOptions {
  /** Events per second the producers write (open loop). */
  rate: number;
  /** Events per producer transaction. @defaultValue 10 */
  eventsPerTransaction?: number;
  beforeSeconds: number;
  holdSeconds: number;
  afterSeconds: number;
  progress?: (line: string) => void;
}

/** What one phase looked like. */
export interface PhaseFigure {
  phase: 'before' | 'during' | 'after';
  events: number;
  /** ms from a producer's COMMIT returning to the consumer popping the job. */
  lagMs: Distribution;
  /** Committed events not yet handled by the relay at the end of the phase. */
  backlog: number;
  /** Dead tuples of the outbox's hot-path tables (event partitions, cursors, lanes, parked) at the phase's end. */
  deadTuples: number;
  /** Updates and deletes of event rows so far (the write-once design: 0). */
  eventUpdatesAndDeletes: number;
  /** Table plus index size of the outbox's tables, MB. */
  sizeMB: number;
  /** One claim (the relay's own function, rolled back) at the phase's end: time and buffers touched. */
  claimMs: number;
  claimBuffers: number;
}

export interface HeldSnapshotFigure {
  rate: number;
  achievedRate: number;
  eventsPerTransaction: number;
  phases: PhaseFigure[];
  delivered: number;
  duplicates: number;
  /** Events of one aggregate that arrived out of write order. */
  reordered: number;
}

/** The outbox's hot-path tables: the ring's partitions, the cursors, the lanes and the parked events. */
const HOT_TABLES = `relname LIKE 'exactly_once_outbox_events_%' OR relname IN
  ('exactly_once_outbox_progress', 'exactly_once_outbox_lanes', 'exactly_once_outbox_parked')`;

/**
 * A held snapshot against the write-once outbox, on a Postgres cluster of its own with production settings
 * (autovacuum on, fsync on): producers write `rate` events/s in transactions of 10; the relay daemon (the CLI, at its
 * defaults) moves them; a consumer (a process of its own) pops them; after `beforeSeconds` one session opens a
 * REPEATABLE READ transaction, reads, and stays idle for `holdSeconds` (a long report, a stuck session), then ends;
 * `afterSeconds` more. Lag is from each producer's COMMIT returning to the consumer's pop.
 */
export async function heldSnapshotRun(o: HeldSnapshotOptions): Promise<HeldSnapshotFigure> {
  const progress = o.progress ?? (() => {});
  const dir = mkdtempSync(path.join(tmpdir(), 'eo-held-'));
  const owned = await startOwnedCluster(dir, { durable: true, settings: ['autovacuum_naptime=10s'] });
  if ('unavailable' in owned) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`held-snapshot run needs a Postgres cluster of its own: ${owned.unavailable}`);
  }
  const cluster: OwnedCluster = owned;
  const url = `postgres://postgres@127.0.0.1:${cluster.port}/postgres`;
  const pool = new pg.Pool({ connectionString: url, max: 12 });
  const redis = new Redis(REDIS_URL);
  const prefix = benchPrefix('held');
  const list = `${prefix}jobqueue:low_priority`;
  const perTx = o.eventsPerTransaction ?? 10;
  let relay: ReturnType<typeof spawnRelay> | undefined;
  const consumer = spawn(
    process.execPath,
    [new URL('./fresh-consumer.mjs', import.meta.url).pathname, REDIS_URL, list],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const consumerExited = new Promise<void>((resolve) => consumer.once('exit', () => resolve()));
  const ackedAt = new Map<string, number>();
  const arrivals = new Map<string, number>();
  let duplicates = 0;
  let reordered = 0;
  const lastOfAggregate = new Map<string, number>();
  const orderOf = new Map<string, { aggregate: string; n: number }>();
  createInterface({ input: consumer.stdout }).on('line', (line) => {
    const [id = '', at] = line.split(' ');
    if (arrivals.has(id)) duplicates++;
    arrivals.set(id, Number(at));
    const o2 = orderOf.get(id);
    if (o2) {
      const last = lastOfAggregate.get(o2.aggregate) ?? -1;
      if (o2.n < last) reordered++;
      lastOfAggregate.set(o2.aggregate, Math.max(last, o2.n));
    }
  });
  const hold = new pg.Client({ connectionString: url });
  try {
    const k = kyselyFromPool(new pg.Pool({ connectionString: url, max: 1 }));
    await migrateToLatest(k);
    await k.destroy();
    await hold.connect();
    const configFile = writeConfigFile('bench-held', {
      database: { url },
      redis: { url: REDIS_URL },
      outbox: { queue_pattern: `${prefix}jobqueue:{priority}_priority` },
      idempotency: { enabled: false },
      metrics: { enabled: false },
    });
    relay = spawnRelay(configFile);

    const clock = () => performance.timeOrigin + performance.now();
    const aggregates = 1000;
    let sequence = 0;
    const produce = async (): Promise<void> => {
      const events: NewOutboxEvent[] = [];
      for (let i = 0; i < perTx; i++) {
        const n = sequence++;
        events.push({ aggregateId: `a${n % aggregates}`, eventType: 'bench.held', payload: { n } });
      }
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const stored = await storeInOutbox(client, events);
        await client.query('COMMIT');
        const at = clock();
        stored.forEach((e, i) => {
          ackedAt.set(e.id, at);
          orderOf.set(e.id, {
            aggregate: e.aggregateId,
            n: Math.floor(((events[i]?.payload as { n: number } | undefined)?.n ?? 0) / aggregates),
          });
        });
      } finally {
        client.release();
      }
    };
    // Warm-up: one transaction end to end.
    await produce();
    const warm = Date.now() + 60_000;
    while (arrivals.size < perTx) {
      if (Date.now() > warm) throw new Error(`relay did not start: ${relay.stderr()}`);
      await sleep(20);
    }
    ackedAt.clear();
    arrivals.clear();
    lastOfAggregate.clear();

    const phases: PhaseFigure[] = [];
    const started = performance.now();
    let sentTx = 0;
    const inflight = new Set<Promise<void>>();
    const txRate = o.rate / perTx;
    const ends = [o.beforeSeconds, o.beforeSeconds + o.holdSeconds, o.beforeSeconds + o.holdSeconds + o.afterSeconds];
    const names = ['before', 'during', 'after'] as const;
    let phase = 0;
    let phaseStart = clock();
    const ackedInPhase = new Map<string, number>();
    while (phase < 3) {
      const elapsed = (performance.now() - started) / 1000;
      const due = Math.floor(elapsed * txRate);
      for (; sentTx < due; sentTx++) {
        const p = produce()
          .catch((err: unknown) => progress(`producer error: ${(err as Error).message}`))
          .finally(() => inflight.delete(p));
        inflight.add(p);
      }
      if (elapsed >= (ends[phase] as number)) {
        const name = names[phase] as PhaseFigure['phase'];
        // Phase boundary: measure, then open or end the held snapshot.
        const figure = await measure(pool, name, phaseStart, ackedAt, arrivals, ackedInPhase);
        phases.push(figure);
        progress(
          `held-snapshot ${name}: lag p50 ${figure.lagMs.p50} / p99 ${figure.lagMs.p99} / max ${figure.lagMs.max} ms, ` +
            `backlog ${figure.backlog}, dead tuples ${figure.deadTuples}, ${figure.sizeMB} MB, claim ${figure.claimMs} ms / ` +
            `${figure.claimBuffers} buffers`,
        );
        if (name === 'before') {
          await hold.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
          await hold.query('SELECT count(*) FROM exactly_once_outbox_lanes');
        } else if (name === 'during') {
          await hold.query('COMMIT');
        }
        phaseStart = clock();
        phase++;
        continue;
      }
      await sleep(5);
    }
    await Promise.all(inflight);
    const total = ackedAt.size;
    const deadline = Date.now() + 120_000;
    while (arrivals.size < total && Date.now() < deadline) await sleep(50);
    const seconds = (performance.now() - started) / 1000;
    return {
      rate: o.rate,
      achievedRate: Math.round((sentTx * perTx) / seconds),
      eventsPerTransaction: perTx,
      phases,
      delivered: arrivals.size,
      duplicates,
      reordered,
    };
  } finally {
    await hold.query('ROLLBACK').catch(() => {});
    await hold.end().catch(() => {});
    consumer.stdin?.end();
    await consumerExited;
    if (relay) {
      relay.child.kill('SIGTERM');
      await relay.exited;
    }
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
    await pool.end();
    await cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The lag of the events committed in this phase (those arrived by now), and the outbox's state now. */
async function measure(
  pool: pg.Pool,
  phase: PhaseFigure['phase'],
  phaseStart: number,
  ackedAt: Map<string, number>,
  arrivals: Map<string, number>,
  seen: Map<string, number>,
): Promise<PhaseFigure> {
  const lags: number[] = [];
  for (const [id, acked] of ackedAt) {
    if (acked < phaseStart || seen.has(id)) continue;
    const arrived = arrivals.get(id);
    if (arrived === undefined) continue;
    seen.set(id, arrived);
    lags.push(arrived - acked);
  }
  const backlog = await outboxBacklog(pool);
  const { rows: dead } = await pool.query<{ dead: string; changed: string; bytes: string }>(
    `SELECT sum(n_dead_tup) AS dead,
            sum(n_tup_upd + n_tup_del) FILTER (WHERE relname LIKE 'exactly_once_outbox_events_%') AS changed,
            sum(pg_total_relation_size(relid)) AS bytes
       FROM pg_stat_user_tables WHERE ${HOT_TABLES}`,
  );
  const client = await pool.connect();
  let claimMs = 0;
  let claimBuffers = 0;
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ 'QUERY PLAN': unknown }>(
      'EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM exactly_once_outbox_claim(500, 0)',
    );
    const plans = rows[0]?.['QUERY PLAN'] as { 'Execution Time': number; Plan: Record<string, number> }[] | undefined;
    const plan = plans?.[0];
    claimMs = round(plan?.['Execution Time'] ?? 0);
    claimBuffers = (plan?.Plan['Shared Hit Blocks'] ?? 0) + (plan?.Plan['Shared Read Blocks'] ?? 0);
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
  const d = distribution(lags);
  return {
    phase,
    events: d.n,
    lagMs: { n: d.n, p50: round(d.p50), p95: round(d.p95), p99: round(d.p99), max: round(d.max), mean: round(d.mean) },
    backlog: backlog.pending,
    deadTuples: Number(dead[0]?.dead ?? 0),
    eventUpdatesAndDeletes: Number(dead[0]?.changed ?? 0),
    sizeMB: round(Number(dead[0]?.bytes ?? 0) / 1024 / 1024),
    claimMs,
    claimBuffers,
  };
}
