import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeConfigFile } from './helpers/relay-process.js';
import { waitFor } from './helpers/services.js';
import { relayJob, scanKeys, type WorkerEnv, workerEnv } from './helpers/worker-env.js';

// Every block of the README's "Workers" section, run as a user runs it: each TypeScript block as a program (or, for
// `handler.ts`, as the module of the `sh` block's command), against this file's database and Redis prefix. Two
// substitutions only: the lists' `jobqueue:` gets this file's Redis prefix, and `--port 9091` becomes `--port 0`
// (tests run side by side). Package imports resolve to src/, as the packed package's exports would.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'exactly-once.js');
/** tsx by URL: the user files live in a temp directory, whose node_modules have none. */
const TSX = import.meta.resolve('tsx');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const SECTION = README.slice(README.indexOf('\n## Workers\n'), README.indexOf('\n## Idempotent workers\n'));
const blocks = (lang: string) =>
  [...SECTION.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g'))].map((m) => m[1] as string);

let env: WorkerEnv;
let dir: string;
let configFile: string;
before(async () => {
  env = await workerEnv('worker_readme');
  await env.db.pool.query('CREATE TABLE shipments (order_id text NOT NULL, event_id text NOT NULL)');
  dir = mkdtempSync(path.join(tmpdir(), 'eo-worker-readme-'));
  configFile = writeConfigFile('worker-readme', env.tree());
});
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await env.close();
});

/** A README block as a file of a user's project: package imports to src/, the lists under this file's prefix. */
function asUserFile(name: string, block: string): string {
  const file = path.join(dir, name);
  const text = block
    .replaceAll("'exactly-once/worker'", `'${path.join(ROOT, 'src/entries/worker.ts')}'`)
    .replaceAll("'exactly-once'", `'${path.join(ROOT, 'src/index.ts')}'`)
    .replaceAll("'jobqueue:", `'${env.keyPrefix}`);
  writeFileSync(file, text);
  return file;
}

interface Running {
  child: ChildProcess;
  exited: Promise<number | null>;
  output(): string;
  /** `waitFor`, failing with the program's output (not the output when the wait began). */
  until(check: () => Promise<boolean> | boolean, what: string): Promise<void>;
}

function run(args: string[]): Running {
  const { DATABASE_URL: _d, REDIS_URL: _r, ...inherited } = process.env;
  const child = spawn(process.execPath, args, {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...inherited, EXACTLY_ONCE_CONFIG: configFile, LOG_LEVEL: 'warn' },
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const until = async (check: () => Promise<boolean> | boolean, what: string) => {
    try {
      await waitFor(check, 60_000, what);
    } catch (err) {
      throw new Error(`${(err as Error).message}; the program's output:\n${out}`);
    }
  };
  return { child, exited, output: () => out, until };
}

async function heartbeats(): Promise<number> {
  const keys = await scanKeys(env.redis, `${env.keyPrefix}processing:worker:*`);
  return keys.length;
}

/** SIGTERM once the worker is up (its heartbeat exists); it must exit 0 and leave no heartbeat or processing list. */
async function stopCleanly(p: Running): Promise<void> {
  await p.until(async () => (await heartbeats()) === 1, 'the worker running');
  p.child.kill('SIGTERM');
  assert.equal(await p.exited, 0, p.output());
  assert.equal(await heartbeats(), 0);
  const lists = await scanKeys(env.redis, `${env.keyPrefix}worker:*:processing`);
  assert.deepEqual(lists, []);
}

test('the section has the blocks this test runs', () => {
  assert.equal(blocks('ts').length, 3);
  assert.equal(blocks('sh').length, 1);
});

test('README: createWorker with process, then SIGTERM', async () => {
  const p = run(['--import', TSX, asUserFile('service.mts', blocks('ts')[0] as string)]);
  await env.redis.lpush(env.low, relayJob({ id: 'a' }), relayJob({ id: 'b' }));
  await env.redis.lpush(env.high, relayJob({ id: 'c', priority: 'high' }));
  const log = path.join(dir, 'shipped.log');
  const lines = () => {
    try {
      return readFileSync(log, 'utf8').trim().split('\n');
    } catch {
      return [];
    }
  };
  await p.until(() => lines().length === 3, 'three jobs shipped');
  assert.deepEqual(lines().sort(), [
    'a order.created attempt 1',
    'b order.created attempt 1',
    'c order.created attempt 1',
  ]);
  await stopCleanly(p);
});

test('README: createWorker with processInTransaction; a redelivered job is a duplicate', async () => {
  const p = run(['--import', TSX, asUserFile('transactional.mts', blocks('ts')[1] as string)]);
  const job = relayJob({ id: 'ship-1', payload: { orderId: 'o-1' } });
  await env.redis.lpush(env.low, job, relayJob({ id: 'ship-2', payload: { orderId: 'o-2' } }), job);
  await p.until(async () => (await env.redis.llen(env.low)) === 0, 'the list drained');
  await stopCleanly(p);
  const { rows } = await env.db.pool.query('SELECT order_id, event_id FROM shipments ORDER BY order_id');
  assert.deepEqual(rows, [
    { order_id: 'o-1', event_id: 'ship-1' },
    { order_id: 'o-2', event_id: 'ship-2' },
  ]);
  await env.db.pool.query('TRUNCATE shipments');
});

test('README: exactly-once worker --module ./handler.ts', async () => {
  asUserFile('handler.ts', (blocks('ts')[2] as string).replace(/^\/\/ handler\.ts\n/, ''));
  const command = (blocks('sh')[0] as string).trim().replace('--port 9091', '--port 0');
  const words = [...command.matchAll(/'([^']*)'|(\S+)/g)].map((m) => (m[1] ?? m[2]) as string);
  assert.deepEqual(words.slice(0, 3), ['npx', 'exactly-once', 'worker']);
  const args = words.slice(3).map((w) => (w.startsWith('jobqueue:') ? `${env.keyPrefix}${w.slice(9)}` : w));
  const p = run([BIN, 'worker', ...args]);
  await env.redis.lpush(env.high, relayJob({ id: 'cli-1', payload: { orderId: 'o-9' }, priority: 'high' }));
  await p.until(
    async () => (await env.db.pool.query('SELECT 1 FROM shipments')).rowCount === 1,
    'the CLI worker shipped',
  );
  await stopCleanly(p);
  const { rows } = await env.db.pool.query('SELECT order_id, event_id FROM shipments');
  assert.deepEqual(rows, [{ order_id: 'o-9', event_id: 'cli-1' }]);
});
