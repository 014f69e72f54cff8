import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { createPublisher } from '../src/publishers/create-publisher.js';
import { startTestCluster } from '../test/helpers/redis-cluster.js';
import { seedNaiveOutbox, timeSqlCeiling } from './lib/baselines.js';
import { relayConfig, seedPending, timeRelayDrain } from './lib/outbox.js';
import type { BenchOptions, Row } from './lib/report.js';
import { type BenchDatabase, benchPrefix, createBenchDatabase, deleteRedisPrefix, REDIS_URL } from './lib/services.js';
import { round, sleep } from './lib/stats.js';

const BIN = new URL('../bin/exactly-once.js', import.meta.url).pathname;
const BATCH = 500;
/** Relay processes of the scale-out figure (the 1 -> 2 -> 4). */
const PROCESSES = [1, 2, 4];

export interface ScaleFigure {
  events: number;
  aggregates: number;
  sqlCeilingPerSec: number;
  listPerSec: number;
  streamPerSec: number;
  clusterListPerSec: number;
  clusterStreamPerSec: number;
  /** relay processes -> events/s */
  processesPerSec: Record<number, number>;
}

/**
 * Issue 11's figures, each beside a baseline of the same run: the stream publisher against the list publisher (one
 * in-process relay, batch 500), each publisher on a three-master Redis Cluster against the single Redis, and 1, 2
 * and 4 relay processes (the real CLI) on one database against the one-statement SQL ceiling.
 */
export async function scaleBench(opts: BenchOptions): Promise<{ rows: Row[]; figure: ScaleFigure }> {
  const db = await createBenchDatabase('scale', 8);
  const redis = new Redis(REDIS_URL);
  const prefix = benchPrefix('scale');
  const n = opts.events;
  const rate = (seconds: number) => Math.round(n / seconds);
  const reseed = async (status: 'pending' | 'published' = 'pending') => {
    await db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
    await seedPending(db.pool, n, opts.aggregates, status);
    await db.pool.query('VACUUM ANALYZE exactly_once_outbox_events');
  };
  const cluster = await startTestCluster();
  try {
    await seedNaiveOutbox(db.pool, n, opts.aggregates);
    const sqlCeilingPerSec = rate(await timeSqlCeiling({ url: db.url, batchSize: BATCH }));
    const drain = async (publisher: 'list' | 'stream', client: Redis | typeof cluster.client) => {
      await reseed();
      // A key prefix per kind: the cluster keeps what each drain wrote (it dies at the end), and a list key reused
      // as a stream would fail with WRONGTYPE.
      const keys = `${prefix}${publisher}:`;
      const config = relayConfig(db.url, REDIS_URL, keys, { batch_size: BATCH, poll_interval: '100ms', publisher });
      const perSec = rate(
        await timeRelayDrain({
          config,
          pool: db.pool,
          redis,
          n,
          publisher: createPublisher(config, { redis: client }),
        }),
      );
      await deleteRedisPrefix(redis, prefix);
      opts.progress(`scale ${publisher} on ${client === redis ? 'one Redis' : 'a 3-master cluster'}: ${perSec}/s`);
      return perSec;
    };
    const listPerSec = await drain('list', redis);
    const streamPerSec = await drain('stream', redis);
    const clusterListPerSec = await drain('list', cluster.client);
    const clusterStreamPerSec = await drain('stream', cluster.client);
    const processesPerSec: Record<number, number> = {};
    for (const count of PROCESSES) {
      await db.pool.query('TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked');
      processesPerSec[count] = rate(await timeProcesses(db, redis, prefix, count, n, opts.aggregates));
      await deleteRedisPrefix(redis, prefix);
      opts.progress(`scale ${count} relay process(es): ${processesPerSec[count]}/s; ceiling ${sqlCeilingPerSec}/s`);
    }
    const figure = {
      events: n,
      aggregates: opts.aggregates,
      sqlCeilingPerSec,
      listPerSec,
      streamPerSec,
      clusterListPerSec,
      clusterStreamPerSec,
      processesPerSec,
    };
    return { rows: scaleRows(figure), figure };
  } finally {
    await cluster.close();
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
    await db.close();
  }
}

/**
 * Seconds for `count` relay processes to publish `n` events. The relays start on an empty outbox (their start-up is
 * not what is measured); a bench transaction holds every lane row, so their claims find nothing while the events are
 * inserted and vacuumed, as the in-process drains' tables are. The clock starts when that transaction ends.
 */
async function timeProcesses(
  db: BenchDatabase,
  redis: Redis,
  prefix: string,
  count: number,
  n: number,
  aggregates: number,
): Promise<number> {
  const file = path.join(tmpdir(), `eo-bench-scale-${process.pid}-${count}.yaml`);
  writeFileSync(
    file,
    stringify({
      exactly_once: {
        database: { url: db.url },
        redis: { url: REDIS_URL },
        outbox: {
          queue_pattern: `${prefix}jobqueue:{priority}_priority`,
          dedup_window: '10m',
          batch_size: BATCH,
          poll_interval: '100ms',
        },
        metrics: { enabled: false },
      },
    }),
  );
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      const child = spawn(process.execPath, [BIN, 'relay', '--config', file, '--port', String(port)], {
        stdio: 'ignore',
        env: { ...process.env, LOG_LEVEL: 'warn' },
      });
      children.push(child);
      await until(async () => {
        if (child.exitCode !== null) throw new Error('a bench relay exited at start');
        try {
          return (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200;
        } catch {
          return false;
        }
      }, 60_000);
    }
    const gate = await db.pool.connect();
    let started: number;
    try {
      await gate.query('BEGIN');
      await gate.query('SELECT lane FROM exactly_once_outbox_lanes FOR UPDATE');
      await seedPending(db.pool, n, aggregates);
      await db.pool.query('VACUUM ANALYZE exactly_once_outbox_events');
      await gate.query('COMMIT');
      started = performance.now();
    } finally {
      gate.release();
    }
    const list = `${prefix}jobqueue:low_priority`;
    await until(async () => (await redis.llen(list)) >= n, 600_000, 20);
    return (performance.now() - started) / 1000;
  } finally {
    for (const c of children) c.kill('SIGKILL');
    rmSync(file, { force: true });
  }
}

async function until(check: () => Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench wait timed out after ${timeoutMs} ms`);
    await sleep(everyMs);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function scaleRows(f: ScaleFigure): Row[] {
  const where = `${f.aggregates} aggregates, batch ${BATCH}`;
  const one = f.processesPerSec[1] as number;
  return [
    {
      benchmark: `scale ${where}: stream publisher (XADD), 1 relay`,
      figure: `${f.streamPerSec} ev/s`,
      baseline: `list publisher ${f.listPerSec} ev/s`,
      ratio: `${round(f.streamPerSec / f.listPerSec)}x list`,
      target: 'reference',
      met: undefined,
    },
    {
      benchmark: `scale ${where}: list publisher on a 3-master cluster, 1 relay`,
      figure: `${f.clusterListPerSec} ev/s`,
      baseline: `one Redis ${f.listPerSec} ev/s`,
      ratio: `${round(f.clusterListPerSec / f.listPerSec)}x one Redis`,
      target: 'reference',
      met: undefined,
    },
    {
      benchmark: `scale ${where}: stream publisher on a 3-master cluster, 1 relay`,
      figure: `${f.clusterStreamPerSec} ev/s`,
      baseline: `one Redis ${f.streamPerSec} ev/s`,
      ratio: `${round(f.clusterStreamPerSec / f.streamPerSec)}x one Redis`,
      target: 'reference',
      met: undefined,
    },
    ...PROCESSES.map((count) => ({
      benchmark: `scale ${where}: ${count} relay process${count > 1 ? 'es' : ''} (CLI)`,
      figure: `${f.processesPerSec[count]} ev/s`,
      baseline: `1 process ${one} ev/s; SQL ${f.sqlCeilingPerSec} ev/s`,
      ratio: `${round((f.processesPerSec[count] as number) / one)}x 1 process; ${round((f.processesPerSec[count] as number) / f.sqlCeilingPerSec)} of SQL`,
      target: 'reference',
      met: undefined,
    })),
  ];
}
