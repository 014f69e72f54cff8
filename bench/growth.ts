import { Redis } from 'ioredis';
import type pg from 'pg';
import { relayConfig, seedPending, timeRelayDrain } from './lib/outbox.js';
import type { BenchOptions, Row } from './lib/report.js';
import { benchPrefix, createBenchDatabase, deleteRedisPrefix, REDIS_URL } from './lib/services.js';
import { round } from './lib/stats.js';

export interface Sizes {
  tableBytes: number;
  indexesBytes: number;
  indexes: Record<string, number>;
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
}

/**
 * Growth: the same drain (N events over 1,000 aggregates, 2 relay loops) on an empty outbox and on one that retains
 * `history` published rows (as it does for `cleanup_after`, 7 days by default). Then the outbox's table and index
 * sizes after that drain: how much the drain itself left behind (the machine runs with autovacuum off, so dead row
 * versions stay until VACUUM).
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
    await db.pool.query('VACUUM ANALYZE exactly_once_outbox');
    const emptyPerSec = await drain();

    await db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
    const t = performance.now();
    await seedPending(db.pool, opts.history, opts.aggregates, 'published');
    await seedPending(db.pool, opts.events, opts.aggregates);
    await db.pool.query('VACUUM ANALYZE exactly_once_outbox');
    const loadSeconds = round((performance.now() - t) / 1000, 1);
    const sizesBefore = await sizes(db.pool);
    const historyPerSec = await drain();
    const sizesAfter = await sizes(db.pool);
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
    };
    opts.progress(`growth: ${emptyPerSec}/s empty, ${historyPerSec}/s with ${opts.history} rows`);
    const mb = (b: number) => `${round(b / 2 ** 20, 1)} MiB`;
    const pending = (s: Sizes) =>
      (s.indexes.exactly_once_outbox_pending ?? 0) + (s.indexes.exactly_once_outbox_pending_aggregate ?? 0);
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
        figure: `table ${mb(sizesAfter.tableBytes)}, indexes ${mb(sizesAfter.indexesBytes)}`,
        baseline: `before: table ${mb(sizesBefore.tableBytes)}, indexes ${mb(sizesBefore.indexesBytes)}`,
        ratio: `pending indexes ${mb(pending(sizesBefore))} -> ${mb(pending(sizesAfter))}`,
        target: 'info',
        met: undefined,
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
  const { rows } = await pool.query<{ name: string; bytes: string }>(
    `SELECT c.relname AS name, pg_relation_size(c.oid) AS bytes
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = 'exactly_once_outbox'::regclass`,
  );
  const t = await pool.query<{ t: string; i: string }>(
    `SELECT pg_table_size('exactly_once_outbox') AS t, pg_indexes_size('exactly_once_outbox') AS i`,
  );
  return {
    tableBytes: Number(t.rows[0]?.t),
    indexesBytes: Number(t.rows[0]?.i),
    indexes: Object.fromEntries(rows.map((r) => [r.name, Number(r.bytes)])),
  };
}
