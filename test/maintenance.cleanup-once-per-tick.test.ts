import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { configFromObject } from '../src/config/load-config.js';
import { FeatureDisabledError, InvalidParameterError } from '../src/errors.js';
import { intervalToCron } from '../src/maintenance/cron.js';
import { runCleanup } from '../src/maintenance/run-cleanup.js';
import {
  CLEANUP_QUEUES,
  MAINTENANCE_SCHEMA,
  type ScheduledRun,
  startMaintenance,
} from '../src/maintenance/scheduler.js';
import { Metrics } from '../src/metrics/metrics.js';
import { cleanupOutbox } from '../src/outbox/cleanup.js';
import { outboxCounts, seedOutbox } from './helpers/outbox-rows.js';
import { createTestDatabase, type TestDatabase, waitFor } from './helpers/services.js';

const DAY = 86_400_000;
let db: TestDatabase;

before(async () => {
  db = await createTestDatabase('maintenance');
});
after(async () => {
  await db.close();
});

async function resetOutbox() {
  await db.pool.query('TRUNCATE exactly_once_outbox');
}

describe('outbox cleanup', () => {
  test('deletes published and failed rows older than cleanup_after, never pending ones', async () => {
    await resetOutbox();
    const old = 8 * DAY;
    await seedOutbox(db.pool, [
      { status: 'published', ageMs: old },
      { status: 'pending', ageMs: old },
      { status: 'failed', ageMs: old },
      { status: 'published', ageMs: old },
      { status: 'pending', ageMs: old },
      { status: 'published', ageMs: 1000 },
      { status: 'failed', ageMs: 1000 },
      { status: 'pending', ageMs: 0 },
    ]);
    // Small windows, so the keyset walk crosses several statements and steps over old pending rows.
    const result = await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY, batchSize: 2 });
    assert.equal(result.deleted, 3);
    assert.ok(result.batches >= 3, `expected several windows, got ${result.batches}`);
    assert.deepEqual(await outboxCounts(db.pool), { pending: 3, published: 1, failed: 1 });
  });

  test('stops at the first window with nothing old instead of scanning the whole table', async () => {
    await resetOutbox();
    await seedOutbox(db.pool, [
      ...Array.from({ length: 5 }, () => ({ status: 'published' as const, ageMs: 8 * DAY })),
      ...Array.from({ length: 50 }, () => ({ status: 'published' as const, ageMs: 0 })),
    ]);
    const result = await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY, batchSize: 5 });
    assert.equal(result.deleted, 5);
    assert.equal(result.batches, 2);
  });

  test('rejects a negative age or batch size naming the option', async () => {
    await assert.rejects(cleanupOutbox(db.pool, { olderThanMs: -1 }), { field: 'olderThanMs' });
    await assert.rejects(cleanupOutbox(db.pool, { olderThanMs: 1, batchSize: 0 }), { field: 'batchSize' });
  });
});

describe('runCleanup', () => {
  const config = configFromObject({ database: { url: 'postgres://unused' }, outbox: { cleanup_after: '168h' } });

  test('outbox: deletes, reports and counts', async () => {
    await resetOutbox();
    await seedOutbox(db.pool, [{ status: 'published', ageMs: 8 * DAY }, { status: 'pending' }]);
    const metrics = new Metrics({ processMetrics: false });
    const report = await runCleanup({ config, pool: db.pool, metrics }, 'outbox');
    assert.equal(report.outbox?.deleted, 1);
    assert.equal(report.idempotency, undefined);
    const text = await metrics.text();
    assert.match(text, /exactly_once_maintenance_runs_total\{type="outbox",result="ok"\} 1/);
    assert.match(text, /exactly_once_maintenance_deleted_total\{type="outbox"\} 1/);
  });

  test('idempotency: calls the service; explicit type with no service or disabled feature is FeatureDisabledError', async () => {
    let calls = 0;
    const idempotency = {
      cleanup: async () => {
        calls += 1;
        return 4;
      },
    };
    const report = await runCleanup({ config, pool: db.pool, idempotency }, 'all');
    assert.equal(calls, 1);
    assert.equal(report.idempotency?.deleted, 4);
    assert.ok(report.outbox);
    await assert.rejects(runCleanup({ config, pool: db.pool }, 'idempotency'), FeatureDisabledError);
    const off = configFromObject({ database: { url: 'postgres://unused' }, idempotency: { enabled: false } });
    await assert.rejects(runCleanup({ config: off, pool: db.pool, idempotency }, 'idempotency'), FeatureDisabledError);
    const all = await runCleanup({ config: off, pool: db.pool, idempotency }, 'all');
    assert.deepEqual(all.skipped, [{ type: 'idempotency', reason: 'idempotency is disabled' }]);
    assert.equal(calls, 1);
  });

  test('an unknown type is InvalidParameterError naming type', async () => {
    await assert.rejects(runCleanup({ config, pool: db.pool }, 'everything' as 'all'), (err: unknown) => {
      assert.ok(err instanceof InvalidParameterError);
      assert.equal(err.field, 'type');
      return true;
    });
  });
});

test('intervalToCron maps cleanup_interval onto whole minutes, hours and days', () => {
  assert.equal(intervalToCron(1000), '* * * * *');
  assert.equal(intervalToCron(60_000), '* * * * *');
  assert.equal(intervalToCron(30 * 60_000), '*/30 * * * *');
  assert.equal(intervalToCron(59.8 * 60_000), '0 * * * *');
  assert.equal(intervalToCron(3_600_000), '0 * * * *');
  assert.equal(intervalToCron(6 * 3_600_000), '0 */6 * * *');
  assert.equal(intervalToCron(DAY), '0 0 * * *');
  assert.equal(intervalToCron(7 * DAY), '0 0 */7 * *');
  assert.equal(intervalToCron(90 * DAY), '0 0 1 * *');
});

describe('two replicas with maintenance scheduled', () => {
  const config = configFromObject({ database: { url: 'postgres://unused' } });

  type Run = ScheduledRun & { replica: string };

  function replica(name: string, runs: Run[]) {
    return startMaintenance({
      connectionString: db.url,
      config,
      pool: db.pool,
      // pg-boss evaluates cron every second here (its default is 30 s); workers poll every half second.
      cron: { outbox: '* * * * *' },
      boss: { cronMonitorIntervalSeconds: 1, cronWorkerIntervalSeconds: 1, supervise: false },
      pollingIntervalSeconds: 0.5,
      onRun: (run) => runs.push({ ...run, replica: name }),
    });
  }

  /** Start two replicas at once; if one fails, stop the other so it cannot leak into later tests. */
  async function twoReplicas(runs: Run[]) {
    const started = await Promise.allSettled([replica('a', runs), replica('b', runs)]);
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) {
      await Promise.all(started.map((s) => (s.status === 'fulfilled' ? s.value.stop() : undefined)));
      throw failed.reason;
    }
    return started.map((s) => (s as PromiseFulfilledResult<Awaited<ReturnType<typeof replica>>>).value) as [
      Awaited<ReturnType<typeof replica>>,
      Awaited<ReturnType<typeof replica>>,
    ];
  }

  test('each cron tick runs cleanup exactly once across the cluster', async () => {
    const runs: Run[] = [];
    const t0 = Date.now();
    const [a, b] = await twoReplicas(runs);
    try {
      assert.deepEqual(
        a.schedules.map((s) => s.type),
        ['outbox'],
      );
      await waitFor(() => runs.length > 0, 15_000, 'the first cron tick to run cleanup');
      // Both timekeepers keep evaluating the '* * * * *' schedule every second; no further run may happen
      // within the same minute.
      await new Promise((r) => setTimeout(r, 3000));
      const t1 = Date.now();
      const { rows: jobs } = await db.pool.query<{ id: string; created_on: Date }>(
        `SELECT id, created_on FROM ${MAINTENANCE_SCHEMA}.job WHERE name = $1`,
        [CLEANUP_QUEUES.outbox],
      );
      const minutesSpanned = Math.floor(t1 / 60_000) - Math.floor(t0 / 60_000) + 1;
      assert.ok(
        jobs.length >= 1 && jobs.length <= minutesSpanned,
        `${jobs.length} ticks in ${minutesSpanned} minute(s)`,
      );
      assert.equal(runs.length, jobs.length, 'one run per tick');
      assert.deepEqual(new Set(runs.map((r) => r.jobId)), new Set(jobs.map((j) => j.id)));
      assert.ok(runs.every((r) => r.report?.outbox !== undefined && r.error === undefined));
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  test('jobs queued faster than they run are each run once, by one replica at a time', async () => {
    const runs: Run[] = [];
    const [a, b] = await twoReplicas(runs);
    try {
      const ids = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).trigger('outbox')));
      await waitFor(() => ids.every((id) => runs.some((r) => r.jobId === id)), 20_000, 'every queued job to run');
      const forIds = runs.filter((r) => ids.includes(r.jobId));
      assert.equal(forIds.length, ids.length, 'no job ran twice');
      assert.equal(new Set(forIds.map((r) => r.jobId)).size, ids.length);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
