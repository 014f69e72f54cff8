import type { Redis } from 'ioredis';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { seedPending } from './outbox.js';

/**
 * The baselines' own outbox: the row-state table a hand-written relay uses (and this project used before its
 * write-once storage), `status` flipped by an UPDATE per event, the claim on a partial index of pending rows.
 */
const NAIVE_TABLE = 'bench_naive_outbox';

/** (Re)create the baselines' table with `n` pending events, as `seedPending` fills the outbox, vacuumed. */
export async function seedNaiveOutbox(pool: pg.Pool, n: number, aggregates: number): Promise<void> {
  await pool.query(`DROP TABLE IF EXISTS ${NAIVE_TABLE}`);
  await pool.query(
    `CREATE TABLE ${NAIVE_TABLE} (
       seq bigserial PRIMARY KEY,
       id uuid NOT NULL UNIQUE,
       aggregate_type text NOT NULL,
       aggregate_id text NOT NULL,
       event_type text NOT NULL,
       payload jsonb NOT NULL,
       headers jsonb NOT NULL DEFAULT '{}',
       status text NOT NULL DEFAULT 'pending',
       created_at timestamptz NOT NULL DEFAULT now(),
       published_at timestamptz)`,
  );
  await pool.query(`CREATE INDEX ON ${NAIVE_TABLE} (seq) WHERE status = 'pending'`);
  await seedPending(pool, n, aggregates, 'pending', NAIVE_TABLE);
  await pool.query(`VACUUM ANALYZE ${NAIVE_TABLE}`);
}

/**
 * The SQL ceiling (issue 10): the strongest honest form of "hand out rows as fast as the database can", one statement
 * per batch, autocommit, on one connection:
 *
 *   WITH c AS (SELECT seq ... FOR UPDATE SKIP LOCKED LIMIT 500) UPDATE ... RETURNING payload
 *
 * No Redis, no per-aggregate order, no Node work per row. (The earlier ceiling was four round trips at batch 50 and
 * made the relay look closer to it than it was.)
 */
export async function timeSqlCeiling(options: { url: string; batchSize?: number }): Promise<number> {
  const c = new pg.Client({ connectionString: options.url });
  await c.connect();
  const claim = {
    name: 'ceiling',
    text: `WITH c AS (
             SELECT seq FROM ${NAIVE_TABLE} WHERE status = 'pending' ORDER BY seq
             LIMIT $1 FOR UPDATE SKIP LOCKED)
           UPDATE ${NAIVE_TABLE} o SET status = 'published', published_at = now()
           FROM c WHERE o.seq = c.seq
           RETURNING o.payload::text`,
    values: [options.batchSize ?? 500],
  };
  const started = performance.now();
  try {
    for (;;) {
      const { rowCount } = await c.query(claim);
      if (!rowCount) break;
    }
    return (performance.now() - started) / 1000;
  } finally {
    await c.end();
  }
}

/**
 * The naive pipelined relay a user writes in an afternoon: `loops` connections each run BEGIN; the same claim
 * (SELECT ... FOR UPDATE SKIP LOCKED LIMIT batch, payload as text); one ioredis pipeline of LPUSHes; UPDATE; COMMIT.
 * No dedup marker, no per-aggregate order, so it does less than the relay (a crash between push and COMMIT pushes
 * the batch twice; two loops can reorder an aggregate).
 */
export async function timeNaiveRelay(options: {
  url: string;
  redis: Redis;
  list: string;
  loops: number;
  batchSize: number;
}): Promise<number> {
  const clients = await Promise.all(
    Array.from({ length: options.loops }, async () => {
      const c = new pg.Client({ connectionString: options.url });
      await c.connect();
      return c;
    }),
  );
  const claim = {
    name: 'naive-claim',
    text: `SELECT seq, id, payload::text AS payload FROM ${NAIVE_TABLE} WHERE status = 'pending' ORDER BY seq
           LIMIT $1 FOR UPDATE SKIP LOCKED`,
  };
  const mark = {
    name: 'naive-mark',
    text: `UPDATE ${NAIVE_TABLE} SET status = 'published', published_at = now() WHERE seq = ANY($1::bigint[])`,
  };
  const started = performance.now();
  try {
    await Promise.all(
      clients.map(async (c) => {
        for (;;) {
          await c.query('BEGIN');
          const { rows } = await c.query<{ seq: string; id: string; payload: string }>({
            ...claim,
            values: [options.batchSize],
          });
          if (rows.length === 0) {
            await c.query('COMMIT');
            return;
          }
          const pipe = options.redis.pipeline();
          for (const r of rows) pipe.lpush(options.list, `{"id":"${r.id}","payload":${r.payload}}`);
          await pipe.exec();
          await c.query({ ...mark, values: [rows.map((r) => r.seq)] });
          await c.query('COMMIT');
        }
      }),
    );
    return (performance.now() - started) / 1000;
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
}

export const PGBOSS_QUEUE = 'outbox_events';

/** pg-boss in the bench database (its own schema), without its background supervisor or scheduler. */
export async function startPgBoss(url: string, max: number): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: url,
    max,
    schema: 'pgboss_bench',
    supervise: false,
    schedule: false,
    migrate: true,
  });
  boss.on('error', () => {});
  await boss.start();
  if (!(await boss.getQueue(PGBOSS_QUEUE))) await boss.createQueue(PGBOSS_QUEUE);
  return boss;
}

/**
 * Seed `n` pg-boss jobs the way a producer would: `boss.insert` inside the producer's transaction (through the `db`
 * option), `chunk` jobs per transaction.
 */
export async function seedPgBoss(boss: PgBoss, url: string, n: number, aggregates: number): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const db = { executeSql: (text: string, values: unknown[]) => c.query(text, values) };
  try {
    const chunk = 5000;
    for (let from = 0; from < n; from += chunk) {
      const jobs = [];
      for (let i = from; i < Math.min(n, from + chunk); i++) {
        jobs.push({
          data: {
            aggregate_id: `a${i % aggregates}`,
            event_type: 'bench.event',
            payload: { n: Math.floor(i / aggregates), filepath: `/data/file-${i}`, filesize: 1024 + (i % 4096) },
          },
        });
      }
      await c.query('BEGIN');
      await boss.insert(PGBOSS_QUEUE, jobs, { db });
      await c.query('COMMIT');
    }
  } finally {
    await c.end();
  }
}

/**
 * The pg-boss relay a user might write: `workers` loops of fetch(batch) -> one pipelined LPUSH per job -> complete(ids),
 * going round again at once while there is work (faster than `boss.work()`, which waits its polling interval after
 * every batch). No dedup marker and no per-aggregate order, so it does less than the relay.
 */
export async function timePgBossDrain(options: {
  boss: PgBoss;
  redis: Redis;
  list: string;
  workers: number;
  batchSize: number;
  n: number;
}): Promise<number> {
  const { boss, redis, list } = options;
  let moved = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.workers }, async () => {
      while (moved < options.n) {
        const jobs = await boss.fetch<Record<string, unknown>>(PGBOSS_QUEUE, { batchSize: options.batchSize });
        if (jobs.length === 0) {
          if (moved >= options.n) return;
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        const pipe = redis.pipeline();
        for (const job of jobs) pipe.lpush(list, JSON.stringify({ id: job.id, ...job.data }));
        await pipe.exec();
        await boss.complete(
          PGBOSS_QUEUE,
          jobs.map((j) => j.id),
        );
        moved += jobs.length;
      }
    }),
  );
  return (performance.now() - started) / 1000;
}
