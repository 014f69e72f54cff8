import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { assertOneLineError, type CliResult, runCli } from './helpers/cli-process.js';
import { createTestDatabase, REDIS_URL, type TestDatabase } from './helpers/services.js';

/**
 * How the real CLI fails for an operator: one line naming the problem and its code, exit 1, nothing on stdout.
 * Every command runs in its own process (`node bin/exactly-once.js`); the tests run concurrently to keep the file's
 * wall time down, since each spawn costs seconds of tsx start-up.
 */
let bare: TestDatabase;

before(async () => {
  bare = await createTestDatabase('operator_cli_bare', { migrate: false });
});
after(async () => {
  await bare.close();
});

// EXACTLY_ONCE_CONFIG is emptied so a file from the caller's shell cannot change what is tested.
const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
  runCli(args, { DATABASE_URL: bare.url, REDIS_URL, EXACTLY_ONCE_CONFIG: '', ...env });

describe('operator commands fail in one line', { concurrency: true }, () => {
  test('on an unmigrated database: outbox list / retry, stats and cleanup print EO_NOT_MIGRATED, exit 1', async () => {
    const runs = await Promise.all([
      cli(['outbox', 'list', '--json']),
      cli(['outbox', 'retry', '--all-failed']),
      cli(['outbox', 'retry', '0190a6e0-0000-7000-8000-000000000000']),
      cli(['stats', '--queue', 'q']),
      cli(['cleanup']),
    ]);
    for (const r of runs) {
      assertOneLineError(
        r,
        1,
        /^exactly-once (outbox|stats|cleanup): /,
        /run `exactly-once migrate` first/,
        /\[EO_NOT_MIGRATED\]$/,
      );
    }
    // Nothing was created on the way.
    const { rows } = await bare.pool.query(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`);
    assert.deepEqual(rows, [{ n: 0 }]);
  });

  test('the relay refuses an empty ADMIN_TOKEN or one with a space before it starts, naming it', async () => {
    const [empty, spaced, stats] = await Promise.all([
      cli(['relay', '--port', '0'], { ADMIN_TOKEN: '' }),
      cli(['relay', '--port', '0'], { ADMIN_TOKEN: 'two words' }),
      // Operator commands load the same config, so they refuse it too.
      cli(['stats', '--queue', 'q'], { ADMIN_TOKEN: '' }),
    ]);
    assertOneLineError(empty, 1, /^exactly-once relay: ADMIN_TOKEN: is set but empty/, /\[EO_CONFIG_INVALID\]$/);
    assertOneLineError(spaced, 1, /^exactly-once relay: ADMIN_TOKEN: must be usable as a Bearer token/);
    assert.doesNotMatch(spaced.stderr, /two words/, 'the secret is not echoed');
    assertOneLineError(stats, 1, /^exactly-once stats: ADMIN_TOKEN: is set but empty/);
  });

  test('a database that does not exist: operator commands and the relay print one line with its code', async () => {
    const missing = new URL(bare.url);
    missing.pathname = `/${bare.name}_missing`;
    const runs = await Promise.all([
      cli(['outbox', 'list'], { DATABASE_URL: missing.toString() }),
      cli(['stats', '--queue', 'q'], { DATABASE_URL: missing.toString() }),
      // A long --wait: a missing database is not waited for, so the answer comes at once however loaded the machine.
      cli(['relay', '--port', '0', '--wait', '60s'], { DATABASE_URL: missing.toString() }),
    ]);
    for (const r of runs) {
      assertOneLineError(
        r,
        1,
        /^exactly-once (outbox|stats|relay): /,
        new RegExp(`database "${bare.name}_missing" does not exist`),
        /\[EO_SERVICE_UNREACHABLE\]$/,
      );
    }
  });

  test('flag values are named once, and a negative number is read as a value', async () => {
    const [cursor, orders, limit] = await Promise.all([
      cli(['outbox', 'list', '--cursor', 'garbage']),
      cli(['demo', '--orders', '-5']),
      cli(['outbox', 'list', '--limit', '-1']),
    ]);
    assertOneLineError(cursor, 2, /^exactly-once outbox: --cursor: is not a cursor/);
    assert.doesNotMatch(cursor.stderr, /cursor: cursor:/);
    assertOneLineError(orders, 2, /^exactly-once demo: --orders must be 1\.\.100000/);
    assertOneLineError(limit, 2, /^exactly-once outbox: --limit must be an integer from 1 to 1000/);
  });
});
