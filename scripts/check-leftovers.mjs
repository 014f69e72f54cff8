#!/usr/bin/env node
/**
 * Fails when a test run left a database or Redis key behind (every test file must drop its database and delete its
 * key prefix, see test/helpers/services.ts).
 *
 *   node scripts/check-leftovers.mjs -- <test command...>
 *       Runs the command with a fresh EO_TEST_RUN id, then checks for databases `eo_t_<id>_*` and keys `eot:<id>:*` /
 *       `{eot:<id>:*` (dedup markers). Only this run's names are looked at, so developers and CI jobs sharing one
 *       Postgres and Redis never fail each other's check. Exit code: the command's when it failed, else 1 when
 *       something was left behind, else 0. This is how `npm test` runs the suite.
 *   EO_TEST_RUN=<id> node scripts/check-leftovers.mjs
 *       Only the check, for a run that was started with that id.
 *   node scripts/check-leftovers.mjs --all
 *       Lists every test database and key, of any run (to clean up by hand after interrupted runs); exit 1 if any.
 *
 * Environment: TEST_DATABASE_URL, TEST_REDIS_URL (as the tests use them).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';

const ADMIN_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const RUN_ID = /^[a-z0-9]{1,12}$/;

/** Databases and keys of run `run` (every run when undefined). */
async function leftovers(run) {
  const client = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await client.connect();
  let databases;
  try {
    // `_` is a LIKE wildcard: escape it, and match the run id exactly.
    const pattern = run ? `eo\\_t\\_${run}\\_%` : 'eo\\_t\\_%';
    const { rows } = await client.query('SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1', [pattern]);
    databases = rows.map((r) => r.datname);
  } finally {
    await client.end();
  }
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const keys = [];
  try {
    const prefix = run ? `eot:${run}:` : 'eot:';
    for (const pattern of [`${prefix}*`, `{${prefix}*`]) {
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
    }
  } finally {
    redis.disconnect();
  }
  return { databases, keys: keys.sort() };
}

function report({ databases, keys }, what) {
  if (databases.length === 0 && keys.length === 0) {
    console.log(`check-leftovers: no database or Redis key left behind by ${what}`);
    return 0;
  }
  console.error(
    `check-leftovers: ${what} left behind ${databases.length} database(s) and ${keys.length} Redis key(s):`,
  );
  for (const d of databases) console.error(`  database ${d}`);
  for (const k of keys.slice(0, 50)) console.error(`  key ${k}`);
  if (keys.length > 50) console.error(`  ... and ${keys.length - 50} more keys`);
  return 1;
}

/** Run the command with EO_TEST_RUN set; resolves to its exit code (1 when killed by a signal). */
function runCommand(argv, run) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit', env: { ...process.env, EO_TEST_RUN: run } });
    // Ctrl-C reaches the child through the terminal too; a signal sent to us alone (CI) is passed on.
    for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
    child.once('error', (err) => {
      console.error(`check-leftovers: could not run ${argv[0]}: ${err.message}`);
      resolve(127);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const args = process.argv.slice(2);
let exitCode;
if (args[0] === '--all') {
  exitCode = report(await leftovers(undefined), 'test runs (all of them)');
} else if (args[0] === '--') {
  if (args.length < 2) throw new Error('usage: check-leftovers.mjs -- <command...>');
  const run = randomBytes(4).toString('hex');
  const code = await runCommand(args.slice(1), run);
  const found = report(await leftovers(run), `test run ${run}`);
  exitCode = code !== 0 ? code : found;
} else if (args.length === 0 && RUN_ID.test(process.env.EO_TEST_RUN ?? '')) {
  exitCode = report(await leftovers(process.env.EO_TEST_RUN), `test run ${process.env.EO_TEST_RUN}`);
} else {
  console.error('usage: check-leftovers.mjs -- <command...> | --all   (or EO_TEST_RUN=<id> check-leftovers.mjs)');
  exitCode = 2;
}
process.exit(exitCode);
