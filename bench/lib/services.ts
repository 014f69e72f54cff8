import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { Redis } from 'ioredis';
import pg from 'pg';
import { kyselyFromPool, migrateToLatest } from '../../src/db/migrator.js';

/** The server bench databases are created on (trust auth on the CI machine). */
export const ADMIN_DATABASE_URL =
  process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface BenchDatabase {
  name: string;
  url: string;
  pool: pg.Pool;
  close(): Promise<void>;
}

/** A fresh, migrated database of our own (dropped by `close()`), so a bench never touches anyone's data. */
export async function createBenchDatabase(label: string, poolSize = 10): Promise<BenchDatabase> {
  const name = `eo_bench_${label}_${randomBytes(3).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  const migrator = kyselyFromPool(new pg.Pool({ connectionString: url.toString(), max: 1 }));
  await migrateToLatest(migrator);
  await migrator.destroy();
  const pool = new pg.Pool({ connectionString: url.toString(), max: poolSize });
  pool.on('error', () => {});
  return {
    name,
    url: url.toString(),
    pool,
    async close() {
      await pool.end();
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

async function adminQuery(text: string): Promise<void> {
  const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

/** A Redis key prefix for one bench run; every key we write starts with it (dedup markers: `{<prefix>...}`). */
export function benchPrefix(label: string): string {
  return `eob:${label}:${randomBytes(3).toString('hex')}:`;
}

/** Delete every key under a prefix, markers included (SCAN + UNLINK, never KEYS or FLUSHDB). */
export async function deleteRedisPrefix(redis: Redis, prefix: string): Promise<number> {
  let deleted = 0;
  for (const pattern of [`${prefix}*`, `{${prefix}*`]) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 5000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== '0');
  }
  return deleted;
}

export interface MachineInfo {
  cores: number;
  cpu: string;
  memoryGiB: number;
  node: string;
  postgres: string;
  redis: string;
  /** Server settings that change the figures. */
  postgresSettings: Record<string, string>;
}

export async function machineInfo(): Promise<MachineInfo> {
  const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await c.connect();
  let postgres = '';
  const settings: Record<string, string> = {};
  try {
    postgres = (await c.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]?.v ?? '';
    const { rows } = await c.query<{ name: string; setting: string; unit: string | null }>(
      `SELECT name, setting, unit FROM pg_settings
        WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'autovacuum', 'max_connections')`,
    );
    for (const r of rows) settings[r.name] = r.unit === '8kB' ? `${(Number(r.setting) * 8) / 1024}MB` : r.setting;
  } finally {
    await c.end();
  }
  const redis = new Redis(REDIS_URL);
  const info = await redis.info('server');
  redis.disconnect();
  return {
    cores: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    postgres,
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
    postgresSettings: settings,
  };
}
