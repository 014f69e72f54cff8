import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { UsageError } from '../src/cli/command.js';
import { commands } from '../src/cli/commands/index.js';
import { configFromObject } from '../src/config/load-config.js';
import { IdempotencyService } from '../src/idempotency/index.js';
import { outboxCounts, seedOutbox } from './helpers/outbox-rows.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
} from './helpers/services.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DAY = 86_400_000;
let db: TestDatabase;
let redis: Redis;
let prefix: string;
let configFile: string;
let ids: string[];

before(async () => {
  db = await createTestDatabase('operator_cli');
  Object.assign(process.env, { DATABASE_URL: db.url, REDIS_URL, LOG_LEVEL: 'warn' });
  redis = new Redis(REDIS_URL);
  prefix = redisPrefix('operator_cli');
  configFile = path.join(mkdtempSync(path.join(tmpdir(), 'eo-cli-')), 'exactly-once.yaml');
  writeFileSync(configFile, `exactly_once:\n  idempotency:\n    key_prefix: "${prefix}"\n`);
  process.env.EXACTLY_ONCE_CONFIG = configFile;
  const config = configFromObject({
    database: { url: db.url },
    redis: { url: REDIS_URL },
    idempotency: { key_prefix: prefix },
  });
  const service = new IdempotencyService({ config, pool: db.pool, redis });
  for (const job of ['j1', 'j2', 'j1']) {
    await service.processWithIdempotency(service.generateIdempotencyKey('cli-q', '', job), async () => job);
  }
  await service.close();
  ids = await seedOutbox(db.pool, [
    { status: 'failed', lastError: 'WRONGTYPE Operation against a key holding the wrong kind of value' },
    { status: 'pending' },
    { status: 'failed' },
    { status: 'published', ageMs: 8 * DAY },
  ]);
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
});

/**
 * Run a command in this process (tsx start-up costs ~1.5 s a spawn), capturing what it prints. A UsageError is
 * exit code 2, as main.ts maps it. `spawnCli` below runs the real binary path for the dispatch itself.
 */
let running: Promise<unknown> = Promise.resolve();

/** One at a time: captures replace console.log, so concurrent runs would steal each other's output. */
function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = running.then(() => runInProcess(args));
  running = result.catch(() => {});
  return result;
}

async function runInProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const [name, ...rest] = args;
  const command = commands.find((c) => c.name === name);
  assert.ok(command, `no command ${name}`);
  const lines: string[] = [];
  const original = console.log;
  console.log = (...parts: unknown[]) => {
    lines.push(parts.map(String).join(' '));
  };
  try {
    const code = await command.run(rest);
    return { code, stdout: lines.join('\n'), stderr: '' };
  } catch (err) {
    if (err instanceof UsageError) return { code: 2, stdout: lines.join('\n'), stderr: err.message };
    throw err;
  } finally {
    console.log = original;
  }
}

function spawnCli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: db.url, REDIS_URL, EXACTLY_ONCE_CONFIG: configFile, LOG_LEVEL: 'warn' },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

test('stats --queue prints the dedup statistics and the outbox backlog', async () => {
  const [json, human] = await Promise.all([cli('stats', '--queue', 'cli-q', '--json'), cli('stats', '-q', 'cli-q')]);
  assert.equal(json.code, 0, json.stderr);
  const stats = JSON.parse(json.stdout);
  assert.equal(stats.queue_name, 'cli-q');
  assert.equal(stats.total_keys, 2);
  assert.equal(stats.total_requests, 3);
  assert.equal(stats.duplicates_avoided, 1);
  assert.deepEqual(
    { ...stats.outbox, oldest_pending_age_seconds: 0 },
    {
      pending: 1,
      failed: 2,
      oldest_pending_age_seconds: 0,
    },
  );
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /duplicates avoided\s+1/);
  assert.match(human.stdout, /outbox failed\s+2/);
});

test('outbox list --status failed, with pages', async () => {
  const [json, page] = await Promise.all([
    cli('outbox', 'list', '--status', 'failed', '--json'),
    cli('outbox', 'list', '--status', 'failed', '--limit', '1'),
  ]);
  assert.equal(json.code, 0, json.stderr);
  const listed = JSON.parse(json.stdout);
  assert.deepEqual(
    listed.events.map((e: { id: string }) => e.id),
    [ids[0], ids[2]],
  );
  assert.equal(listed.next_cursor, null);
  assert.equal(page.code, 0, page.stderr);
  assert.match(page.stdout, /^ID\s+STATUS\s+RETRIES/m);
  assert.match(page.stdout, /WRONGTYPE/);
  const next = /--cursor (\S+)/.exec(page.stdout)?.[1];
  assert.ok(next, page.stdout);
  const second = await cli('outbox', 'list', '--status', 'failed', '--cursor', next, '--json');
  assert.deepEqual(
    JSON.parse(second.stdout).events.map((e: { id: string }) => e.id),
    [ids[2]],
  );
});

test('outbox retry <id> and --all-failed replay failed events; cleanup --type outbox deletes old ones', async () => {
  const one = await cli('outbox', 'retry', ids[0] as string);
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stdout, /replayed 1 failed event\b/);
  const notFailed = await cli('outbox', 'retry', ids[1] as string);
  assert.equal(notFailed.code, 1);
  assert.match(notFailed.stdout, /not failed \(left alone\)/);
  const all = await cli('outbox', 'retry', '--all-failed', '--json');
  assert.equal(JSON.parse(all.stdout).retried, 1);
  assert.deepEqual(await outboxCounts(db.pool), { pending: 3, published: 1, failed: 0 });

  const cleanup = await cli('cleanup', '--type', 'outbox', '--json');
  assert.equal(cleanup.code, 0, cleanup.stderr);
  assert.equal(JSON.parse(cleanup.stdout).outbox.deleted, 1);
  const everything = await cli('cleanup');
  assert.equal(everything.code, 0, everything.stderr);
  assert.match(everything.stdout, /idempotency: deleted \d+ expired keys/);
  assert.deepEqual(await outboxCounts(db.pool), { pending: 3, published: 0, failed: 0 });
});

test('the exactly-once binary dispatches to the operator commands', async () => {
  const [stats, usage] = await Promise.all([
    spawnCli('stats', '--queue', 'cli-q', '--json'),
    spawnCli('cleanup', '--type', 'everything'),
  ]);
  assert.equal(stats.code, 0, stats.stderr);
  assert.equal(JSON.parse(stats.stdout).queue_name, 'cli-q');
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--type must be one of/);
});

test('usage errors exit 2 naming the flag; --help exits 0', async () => {
  const results = await Promise.all([
    cli('stats'),
    cli('outbox', 'retry', 'not-a-uuid'),
    cli('outbox', 'retry'),
    cli('outbox', 'list', '--status', 'dead'),
    cli('cleanup', '--type', 'everything'),
    cli('outbox', 'frobnicate'),
  ]);
  for (const r of results) assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.match(results[0]?.stderr ?? '', /--queue is required/);
  assert.match(results[1]?.stderr ?? '', /ids\[0\]: must be a UUID/);
  assert.match(results[4]?.stderr ?? '', /--type must be one of idempotency, outbox, all/);
  const helps = await Promise.all([cli('stats', '--help'), cli('outbox', '--help'), cli('cleanup', '--help')]);
  for (const h of helps) {
    assert.equal(h.code, 0);
    assert.match(h.stdout, /^Usage: exactly-once/);
  }
});
