import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../test/helpers/services.js';

const run = promisify(execFile);

/**
 * A throwaway Postgres cluster that the soak owns: its own data directory and port, so the soak can restart the whole
 * server (a crash with `-m immediate`, or a fast shutdown) without touching anybody else's database.
 */
export interface OwnedCluster {
  port: number;
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  adminUrl: string;
  /** Shell command that stops the server at once, for the watchdog (see watchdog.ts). */
  stopCommand: string[];
  /** Stop the server: `immediate` is a crash (recovery from WAL at the next start), `fast` a clean shutdown. */
  stop(mode: 'immediate' | 'fast'): Promise<void>;
  start(): Promise<void>;
  /** Stop the server and delete its files. */
  destroy(): Promise<void>;
}

/** Where `initdb` and `pg_ctl` live: `PG_BINDIR`, else `pg_config --bindir`, else the newest /usr/lib/postgresql/N. */
function findBinDir(): string | undefined {
  const candidates: string[] = [];
  if (process.env.PG_BINDIR) candidates.push(process.env.PG_BINDIR);
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: 'pipe' }).trim());
  } catch {
    // no pg_config on PATH
  }
  if (existsSync('/usr/lib/postgresql')) {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    candidates.push(...versions.map((v) => `/usr/lib/postgresql/${v}/bin`));
  }
  return candidates.find((dir) => existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'pg_ctl')));
}

/** initdb refuses to run as root: then run the server tools as the `postgres` user through runuser. */
function userPrefix(): { prefix: string[]; uid?: number; gid?: number } | string {
  if (process.getuid?.() !== 0) return { prefix: [] };
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8', stdio: 'pipe' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8', stdio: 'pipe' }).trim());
    execFileSync('runuser', ['--help'], { stdio: 'ignore' });
    return { prefix: ['runuser', '-u', 'postgres', '--'], uid, gid };
  } catch {
    return 'running as root, and there is no `postgres` user or no runuser to run initdb as';
  }
}

/**
 * Create and start a cluster in `dir` (which must exist and be ours), or say why it cannot be done.
 * The server runs with fsync off: a server crash (not a machine crash) still loses nothing, since what Postgres wrote
 * is in the OS page cache; the soak tests the server restart, not the disk.
 */
export async function startOwnedCluster(
  dir: string,
  options: { durable?: boolean; settings?: string[] } = {},
): Promise<OwnedCluster | { unavailable: string }> {
  const bin = findBinDir();
  if (!bin) return { unavailable: 'no initdb/pg_ctl found (set PG_BINDIR, or put pg_config on PATH)' };
  const user = userPrefix();
  if (typeof user === 'string') return { unavailable: user };
  const pgDir = path.join(dir, 'pg');
  const dataDir = path.join(pgDir, 'data');
  mkdirSync(pgDir);
  if (user.uid !== undefined && user.gid !== undefined) {
    chmodSync(dir, 0o711); // the postgres user must pass through the soak's directory to reach its own
    chownSync(pgDir, user.uid, user.gid);
  }
  const tool = (name: string, args: string[]) => [...user.prefix, path.join(bin, name), ...args];
  const exec = async (argv: string[], timeout: number) => {
    const [file, ...args] = argv as [string, ...string[]];
    await run(file, args, { timeout });
  };
  try {
    await exec(
      tool('initdb', ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync']),
      120_000,
    );
  } catch (err) {
    return { unavailable: `initdb failed: ${(err as Error).message.split('\n')[0]}` };
  }
  const port = await freePort();
  const serverOptions = [
    `-p ${port}`,
    `-k ${pgDir}`,
    '-c listen_addresses=127.0.0.1',
    // `durable`: as production runs (the held-snapshot bench); else fsync off (see above).
    ...(options.durable ? [] : ['-c fsync=off', '-c full_page_writes=off']),
    '-c max_connections=200',
    `-c shared_buffers=${options.durable ? '256MB' : '32MB'}`,
    ...(options.settings ?? []).map((s) => `-c ${s}`),
  ].join(' ');
  const startArgv = tool('pg_ctl', [
    '-D',
    dataDir,
    '-l',
    path.join(pgDir, 'log'),
    '-w',
    '-t',
    '60',
    '-o',
    serverOptions,
    'start',
  ]);
  const stopArgv = (mode: string) => tool('pg_ctl', ['-D', dataDir, '-m', mode, '-w', '-t', '60', 'stop']);
  const cluster: OwnedCluster = {
    port,
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stopCommand: stopArgv('immediate'),
    async start() {
      await exec(startArgv, 90_000);
    },
    async stop(mode) {
      await exec(stopArgv(mode), 90_000);
    },
    async destroy() {
      await exec(stopArgv('immediate'), 90_000).catch(() => {});
      rmSync(pgDir, { recursive: true, force: true });
    },
  };
  try {
    await cluster.start();
  } catch (err) {
    rmSync(pgDir, { recursive: true, force: true });
    return { unavailable: `pg_ctl start failed: ${(err as Error).message.split('\n')[0]}` };
  }
  return cluster;
}
