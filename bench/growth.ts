import { Redis } from 'ioredis';
import type pg from 'pg';
import { cleanupOutbox } from '../src/outbox/postgres/cleanup.js';
import { relayConfig, seedPending, timeRelayDrain } from './lib/outbox.js';
import type { BenchOptions, Row } from './lib/report.js';
import { benchPrefix, createBenchDatabase, deleteRedisPrefix, REDIS_URL } from './lib/services.js';
import { round } from './lib/stats.js';

export interface Sizes {
  tableBytes: number;
  indexesBytes: number;
  /** dead row versions in the events' partitions (pg_stat_user_tables; autovacuum is off here) */
  deadTuples: number;
}

export interface GrowthFigure {
  history: number;
  events: number;
  workers: number;
  emptyPerSec: number;
  historyPerSec: number;
  /** history / empty */
  ratio: number;
  /** seconds to load the history (generate_series) */
  loadSeconds: number;
  sizesBefore: Sizes;
  sizesAfter: Sizes;
  /** milliseconds `cleanupOutbox` took to drop the history's partition, and what it reported */
  dropMs: number;
  dropped: number;
  sizesDropped: Sizes;
  /** the row-state table's DELETE of the same rows, per million, ms (measured on `baselineRows`) */
  deletePerMillionMs: number;
  baselineRows: number;
}

/**
 * Growth: the same drain (N events over 1,000 aggregates, 2 relay loops) on an empty outbox and on one that retains
 * `history` published rows (as it does for `cleanup_after`, 7 days by default) in an older partition of the ring.
 * Then the outbox's size after that drain, and retention: the time `cleanupOutbox` takes to drop that history once
 * its partition is past `cleanup_after`, beside the DELETE a row-state table needs for the same rows.
 */
export async function growthBench(opts: BenchOptions): Promise<{ rows: Row[]; figure: GrowthFigure }> {
  const db = await createBenchDatabase('growth', 8);
  const redis = new Redis(REDIS_URL);
  const prefix = benchPrefix('growth');
  const workers = 2;
  const drain = async () => {
    const config = relayConfig(db.url, REDIS_URL, prefix, {
      concurrency: workers,
      batch_size: opts.batchSize,
      poll_interval: '100ms',
    });
    const seconds = await timeRelayDrain({ config, pool: db.pool, redis, n: opts.events });
    await deleteRedisPrefix(redis, prefix);
    return Math.round(opts.events / seconds);
  };
  try {
    await seedPending(db.pool, opts.events, opts.aggregates);
    await db.pool.query('VACUUM ANALYZE exactly_once_outbox_events');
    const emptyPerSec = await drain();

    await db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
    const t = performance.now();
    await seedPending(db.pool, opts.history, opts.aggregates, 'published');
    // The history's partition closes (as the ring's rotation does every cleanup_after / 6); new events go to the next.
    await db.pool.query(
      `WITH m AS (SELECT current_part AS cur, (current_part + 1) % parts AS nxt FROM exactly_once_outbox_meta),
            closed AS (UPDATE exactly_once_outbox_parts p SET closed_at = now() FROM m WHERE p.part = m.cur),
            opened AS (UPDATE exactly_once_outbox_parts p SET opened_at = now(), closed_at = NULL FROM m WHERE p.part = m.nxt)
       UPDATE exactly_once_outbox_meta SET current_part = (SELECT nxt FROM m)`,
    );
    await seedPending(db.pool, opts.events, opts.aggregates);
    await db.pool.query('VACUUM ANALYZE exactly_once_outbox_events');
    const loadSeconds = round((performance.now() - t) / 1000, 1);
    const sizesBefore = await sizes(db.pool);
    const historyPerSec = await drain();
    const sizesAfter = await sizes(db.pool);

    // A week later: the history's partition closed more than cleanup_after ago.
    await db.pool.query(
      `UPDATE exactly_once_outbox_parts SET opened_at = now() - interval '8 days', closed_at = now() - interval '7 days 1 hour'
        WHERE closed_at IS NOT NULL`,
    );
    const dropStarted = performance.now();
    const dropResult = await cleanupOutbox(db.pool, { olderThanMs: 7 * 24 * 3600 * 1000 });
    const dropMs = round(performance.now() - dropStarted, 1);
    const sizesDropped = await sizes(db.pool);
    const baselineRows = Math.min(opts.history, 1_000_000);
    const deletePerMillionMs = round((await timeRowStateDelete(db.pool, baselineRows)) * (1_000_000 / baselineRows), 0);
    const figure: GrowthFigure = {
      history: opts.history,
      events: opts.events,
      workers,
      emptyPerSec,
      historyPerSec,
      ratio: round(historyPerSec / emptyPerSec),
      loadSeconds,
      sizesBefore,
      sizesAfter,
      dropMs,
      dropped: dropResult.deleted,
      sizesDropped,
      deletePerMillionMs,
      baselineRows,
    };
    opts.progress(
      `growth: ${emptyPerSec}/s empty, ${historyPerSec}/s with ${opts.history} rows; dropped ${dropResult.deleted} in ${dropMs} ms`,
    );
    const mb = (b: number) => `${round(b / 2 ** 20, 1)} MiB`;
    const size = (s: Sizes) =>
      `table ${mb(s.tableBytes)}, indexes ${mb(s.indexesBytes)}, ${s.deadTuples.toLocaleString('en-US')} dead`;
    const rows: Row[] = [
      {
        benchmark: `growth: drain with ${opts.history.toLocaleString('en-US')} retained published rows`,
        figure: `${historyPerSec} ev/s`,
        baseline: `empty history ${emptyPerSec} ev/s`,
        ratio: `${figure.ratio} (${round((figure.ratio - 1) * 100, 1)}%)`,
        target: 'drop <= 10% (ratio >= 0.90)',
        met: figure.ratio >= 0.9,
      },
      {
        benchmark: 'outbox size after that drain',
        figure: size(sizesAfter),
        baseline: `before: ${size(sizesBefore)}`,
        ratio: `${(sizesAfter.deadTuples - sizesBefore.deadTuples).toLocaleString('en-US')} dead row versions left by the drain`,
        target: 'no dead tuples from the hot path',
        met: sizesAfter.deadTuples - sizesBefore.deadTuples === 0,
      },
      {
        benchmark: `retention: drop ${opts.history.toLocaleString('en-US')} published events (cleanupOutbox, partition TRUNCATE)`,
        figure: `${dropMs} ms, ${dropResult.deleted.toLocaleString('en-US')} events; after: ${size(sizesDropped)}`,
        baseline: `row-state DELETE ${deletePerMillionMs} ms per million (measured on ${baselineRows.toLocaleString('en-US')} rows)`,
        ratio: `${round(dropMs / ((deletePerMillionMs * opts.history) / 1_000_000), 4)} of the DELETE's time`,
        target: '< 1 s, no vacuum debt (0 dead tuples)',
        // `deleted` is the planner's estimate above a million rows (counting them would take longer than the drop).
        met: dropMs < 1000 && sizesDropped.deadTuples === 0 && dropResult.deleted >= 0.99 * opts.history,
      },
    ];
    return { rows, figure };
  } finally {
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
    await db.close();
  }
}

async function sizes(pool: pg.Pool): Promise<Sizes> {
  await pool.query('SELECT pg_stat_force_next_flush()');
  const { rows } = await pool.query<{ t: string; i: string; dead: string }>(
    `SELECT sum(pg_table_size(c.oid)) AS t, sum(pg_indexes_size(c.oid)) AS i, sum(s.n_dead_tup) AS dead
       FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
       JOIN pg_stat_user_tables s ON s.relid = c.oid
      WHERE h.inhparent = 'exactly_once_outbox_events'::regclass`,
  );
  return {
    tableBytes: Number(rows[0]?.t ?? 0),
    indexesBytes: Number(rows[0]?.i ?? 0),
    deadTuples: Number(rows[0]?.dead ?? 0),
  };
}

/** Milliseconds a row-state outbox takes to DELETE `n` published rows in batches of 10,000 (its cleanup's way). */
async function timeRowStateDelete(pool: pg.Pool, n: number): Promise<number> {
  await pool.query('DROP TABLE IF EXISTS bench_row_state_history');
  await pool.query(
    `CREATE TABLE bench_row_state_history (
       seq bigserial PRIMARY KEY, id uuid NOT NULL UNIQUE, aggregate_type text NOT NULL, aggregate_id text NOT NULL,
       event_type text NOT NULL, payload jsonb NOT NULL, headers jsonb NOT NULL DEFAULT '{}',
       status text NOT NULL DEFAULT 'published', created_at timestamptz NOT NULL DEFAULT now(), published_at timestamptz)`,
  );
  await pool.query('CREATE INDEX ON bench_row_state_history (created_at)');
  await seedPending(pool, n, 1000, 'pending', 'bench_row_state_history');
  await pool.query('VACUUM ANALYZE bench_row_state_history');
  const started = performance.now();
  for (;;) {
    const { rowCount } = await pool.query(
      `DELETE FROM bench_row_state_history WHERE seq IN (
         SELECT seq FROM bench_row_state_history WHERE created_at < now() ORDER BY created_at LIMIT 10000)`,
    );
    if (!rowCount) break;
  }
  const ms = performance.now() - started;
  await pool.query('DROP TABLE bench_row_state_history');
  return ms;
}
