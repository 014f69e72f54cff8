import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { IdempotencyService } from '../src/idempotency/index.js';
import { type CliResult, runCli, showCli as show } from './helpers/cli-process.js';
import { closeCurrentPartition, outboxCounts, seedOutbox } from './helpers/outbox-rows.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
} from './helpers/services.js';

/**
 * The operator commands as operators run them: `node bin/exactly-once.js ...` in a child process, asserting what it
 * prints and its exit code. Nothing runs in-process, so dispatch, config loading, error printing and exit codes of
 * main.ts are all under test. Failures (unmigrated database, bad ADMIN_TOKEN) are in admin.operator-cli-failures.
 * Tests run concurrently where they do not share state: each spawn costs seconds of tsx start-up.
 */
const DAY = 86_400_000;
let db: TestDatabase;
let redis: Redis;
let prefix: string;
let configFile: string;
let ids: string[];

before(async () => {
  db = await createTestDatabase('operator_cli');
  redis = new Redis(REDIS_URL);
  prefix = redisPrefix('operator_cli');
  configFile = path.join(mkdtempSync(path.join(tmpdir(), 'eo-cli-')), 'exactly-once.yaml');
  writeFileSync(configFile, `exactly_once:\n  idempotency:\n    key_prefix: "${prefix}"\n`);
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
  // The published event is history of a partition that closed 8 days ago (cleanup_after: 7 days by default).
  const [history] = await seedOutbox(db.pool, [{ status: 'published', ageMs: 8 * DAY }]);
  await closeCurrentPartition(db.pool, 9 * DAY, 8 * DAY);
  ids = [
    ...(await seedOutbox(db.pool, [
      { status: 'failed', lastError: 'WRONGTYPE Operation against a key holding the wrong kind of value' },
      { status: 'pending' },
      { status: 'failed' },
    ])),
    history as string,
  ];
});
after(async () => {
  await deleteRedisPrefix(redis, prefix);
  redis.disconnect();
  await db.close();
  rmSync(path.dirname(configFile), { recursive: true, force: true });
});

/** `exactly-once <args>` against the test database, with this file's config. */
const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
  runCli(args, { DATABASE_URL: db.url, REDIS_URL, EXACTLY_ONCE_CONFIG: configFile, ...env });

describe('operator commands', { concurrency: true }, () => {
  // These two share the seeded rows and run in order; the usage test runs alongside them.
  // Nested suites inherit the parent's concurrency: these two must not overlap.
  describe('on a migrated database', { concurrency: 1 }, () => {
    test('stats and outbox list print the dedup statistics, the backlog and pages of events', async () => {
      const [statsJson, statsHuman, listJson, listPage] = await Promise.all([
        // A valid ADMIN_TOKEN is accepted (refusals: admin.operator-cli-failures).
        cli(['stats', '--queue', 'cli-q', '--json'], { ADMIN_TOKEN: 'abc-DEF_123.~+/==' }),
        cli(['stats', '-q', 'cli-q']),
        cli(['outbox', 'list', '--status', 'failed', '--json']),
        cli(['outbox', 'list', '--status', 'failed', '--limit', '1']),
      ]);
      assert.equal(statsJson.code, 0, show(statsJson));
      const stats = JSON.parse(statsJson.stdout);
      assert.equal(stats.queue_name, 'cli-q');
      assert.equal(stats.total_keys, 2);
      assert.equal(stats.total_requests, 3);
      assert.equal(stats.duplicates_avoided, 1);
      assert.deepEqual({ pending: stats.outbox.pending, failed: stats.outbox.failed }, { pending: 1, failed: 2 });
      assert.equal(typeof stats.outbox.oldest_pending_age_seconds, 'number');
      assert.equal(statsHuman.code, 0, show(statsHuman));
      assert.match(statsHuman.stdout, /^queue\s+cli-q$/m);
      assert.match(statsHuman.stdout, /^duplicates avoided\s+1$/m);
      assert.match(statsHuman.stdout, /^outbox failed\s+2$/m);

      assert.equal(listJson.code, 0, show(listJson));
      const listed = JSON.parse(listJson.stdout);
      assert.deepEqual(
        listed.events.map((e: { id: string }) => e.id),
        [ids[0], ids[2]],
      );
      assert.equal(listed.next_cursor, null);
      assert.equal(listPage.code, 0, show(listPage));
      assert.match(listPage.stdout, /^ID\s+STATUS\s+RETRIES/m);
      assert.match(listPage.stdout, new RegExp(`^${ids[0]}\\s+failed\\s+5\\s.*WRONGTYPE`, 'm'));
      assert.doesNotMatch(listPage.stdout, new RegExp(ids[2] as string));
      const next = /--cursor (\S+)/.exec(listPage.stdout)?.[1];
      assert.ok(next, listPage.stdout);
      const second = await cli(['outbox', 'list', '--status', 'failed', '--cursor', next, '--json']);
      assert.equal(second.code, 0, show(second));
      assert.deepEqual(
        JSON.parse(second.stdout).events.map((e: { id: string }) => e.id),
        [ids[2]],
      );
    });

    test('outbox retry <id> and --all-failed replay failed events; cleanup deletes old ones', async () => {
      const [one, notFailed] = await Promise.all([
        cli(['outbox', 'retry', ids[0] as string]),
        cli(['outbox', 'retry', ids[1] as string]),
      ]);
      assert.equal(one.code, 0, show(one));
      assert.equal(one.stdout.trim(), 'replayed 1 failed event');
      assert.equal(notFailed.code, 1, show(notFailed));
      assert.match(notFailed.stdout, new RegExp(`^not failed \\(left alone\\): ${ids[1]}$`, 'm'));

      // Independent rows: retry touches the failed event left, cleanup the 8-day-old published one.
      const [all, cleanup, idempotency] = await Promise.all([
        cli(['outbox', 'retry', '--all-failed', '--json']),
        cli(['cleanup']),
        cli(['cleanup', '--type', 'idempotency', '--json']),
      ]);
      assert.equal(all.code, 0, show(all));
      assert.equal(JSON.parse(all.stdout).retried, 1);
      assert.equal(cleanup.code, 0, show(cleanup));
      assert.match(cleanup.stdout, /^outbox: deleted 1 old events in \d+ batches$/m);
      assert.match(cleanup.stdout, /^idempotency: deleted 0 expired keys$/m);
      assert.equal(idempotency.code, 0, show(idempotency));
      const report = JSON.parse(idempotency.stdout);
      assert.deepEqual(report.idempotency, { deleted: 0 });
      assert.equal(report.outbox, undefined);
      assert.deepEqual(await outboxCounts(db.pool), { pending: 3, published: 0, failed: 0 });
    });
  });

  test('usage errors exit 2 naming the flag; --help exits 0 with the usage on stdout', async () => {
    const [noQueue, badId, badStatus, badType, help] = await Promise.all([
      cli(['stats']),
      cli(['outbox', 'retry', 'not-a-uuid']),
      cli(['outbox', 'list', '--status', 'dead']),
      cli(['cleanup', '--type', 'everything']),
      cli(['outbox', '--help']),
    ]);
    for (const r of [noQueue, badId, badStatus, badType]) {
      assert.equal(r.code, 2, show(r));
      assert.equal(r.stdout, '', show(r));
    }
    assert.match(noQueue.stderr, /^exactly-once stats: --queue is required/);
    assert.match(badId.stderr, /^exactly-once outbox: ids\[0\]: must be a UUID/);
    assert.match(badStatus.stderr, /^exactly-once outbox: --status must be one of pending, published, failed/);
    assert.match(badType.stderr, /^exactly-once cleanup: --type must be one of idempotency, outbox, all/);
    assert.equal(help.code, 0, show(help));
    assert.match(help.stdout, /^Usage: exactly-once outbox <list\|retry>/);
  });
});
