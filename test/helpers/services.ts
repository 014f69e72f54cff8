import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { kyselyFromPool, migrateToLatest } from '../../src/db/migrator.js';
import { mastersOf, type RedisClient } from '../../src/redis.js';

/** The server the tests create their databases on. Trust auth on the CI machine. */
export const ADMIN_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface TestDatabase {
  name: string;
  url: string;
  pool: pg.Pool;
  /** Drop the database (unless KEEP_TEST_DB=1, to leave evidence behind). */
  close(): Promise<void>;
}

/**
 * The id of this test run, when `scripts/check-leftovers.mjs` runs the suite (it sets `EO_TEST_RUN`): database names
 * and Redis prefixes carry it, so the check after the run finds this run's leftovers and never another run's.
 */
export const TEST_RUN = /^[a-z0-9]{1,12}$/.test(process.env.EO_TEST_RUN ?? '') ? process.env.EO_TEST_RUN : undefined;

/** `eo_t_[<run>_]<label>_<random>`: the name of a test database (scripts/check-leftovers.mjs relies on the shape). */
export function testDatabaseName(label: string): string {
  const run = TEST_RUN ? `${TEST_RUN}_` : '';
  return `eo_t_${run}${label.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
}

/**
 * A fresh database for one test file, migrated to latest. Each file gets its own, so files run in parallel
 * and LISTEN/NOTIFY channels never cross.
 */
export async function createTestDatabase(label: string, options: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const name = testDatabaseName(label);
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 10 });
  pool.on('error', () => {});
  if (options.migrate !== false) {
    const db = kyselyFromPool(new pg.Pool({ connectionString: url.toString(), max: 1 }));
    await migrateToLatest(db);
    await db.destroy();
  }
  return {
    name,
    url: url.toString(),
    pool,
    async close() {
      await pool.end();
      if (process.env.KEEP_TEST_DB === '1') return;
      const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** A Redis key prefix unique to one test file, so files never see each other's keys: `eot:[<run>:]<label>:<random>:`. */
export function redisPrefix(label: string): string {
  return `eot:${TEST_RUN ? `${TEST_RUN}:` : ''}${label}:${randomBytes(3).toString('hex')}:`;
}

/**
 * Delete every key under a prefix (SCAN, never KEYS), on every master of a cluster. Dedup markers carry the list key
 * as a hash tag, so `{<prefix>...}:eo:dedup:<id>` goes too. Keys are deleted one per command: on a cluster node, keys of
 * one SCAN page may sit in different slots, and a multi-key DEL across slots is refused.
 */
export async function deleteRedisPrefix(redis: RedisClient, prefix: string): Promise<void> {
  for (const node of mastersOf(redis)) {
    for (const match of [`${prefix}*`, `{${prefix}*`]) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) {
          const pipeline = node.pipeline();
          for (const key of keys) pipeline.del(key);
          await pipeline.exec();
        }
      } while (cursor !== '0');
    }
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  port: number;
  url: string;
  /** Stop the server (SIGKILL: an outage, not a clean shutdown). */
  kill(): Promise<void>;
  /** Start it again on the same port (empty unless started with `persistent`). */
  start(): Promise<void>;
  /** The running server's process id (undefined while it is stopped). */
  readonly pid: number | undefined;
  /** Send a signal to the running server (e.g. SIGSTOP/SIGCONT to freeze it); false when it is not running. */
  signal(signal: NodeJS.Signals): boolean;
}

/**
 * A test-owned redis-server on its own loopback port, for outage tests. `dir` is where it keeps its files
 * (default: a fresh temp directory).
 */
export async function startRedisServer(options: { persistent?: boolean; dir?: string } = {}): Promise<RedisServer> {
  const port = await freePort();
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'eo-redis-'));
  let child: ChildProcess | undefined;
  // Whatever the test did, its server and its files go with the test process: no orphan redis-server, no temp dir.
  process.once('exit', () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  });
  const running = () => (child && child.exitCode === null && child.signalCode === null ? child : undefined);
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return running()?.pid;
    },
    signal(signal) {
      return running()?.kill(signal) ?? false;
    },
    async start() {
      child = spawn(
        'redis-server',
        [
          ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir],
          // persistent: an AOF synced on every write, so a SIGKILL + restart is an outage, not data loss
          ...(options.persistent ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
        ],
        { stdio: 'ignore' },
      );
      await waitForRedisPing(port, 'redis-server to accept connections');
    },
    async kill() {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill('SIGKILL');
      });
    },
  };
  await server.start();
  return server;
}

/** Wait (10 s at most) until a redis-server on this loopback port answers PING. */
export async function waitForRedisPing(port: number, what: string): Promise<void> {
  await waitFor(
    async () => {
      const probe = new Redis(port, '127.0.0.1', {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      probe.on('error', () => {});
      try {
        await probe.connect();
        return (await probe.ping()) === 'PONG';
      } catch {
        return false;
      } finally {
        probe.disconnect();
      }
    },
    10_000,
    what,
  );
}

/** Poll `check` until it returns true or the deadline passes (then throw naming what we waited for). */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
