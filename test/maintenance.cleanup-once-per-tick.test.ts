import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { configFromObject } from '../src/config/load-config.js';
import { FeatureDisabledError, InvalidParameterError, MaintenanceError } from '../src/errors.js';
import { silentLogger } from '../src/logger.js';
import { runCleanup } from '../src/maintenance/run-cleanup.js';
import { claimTick, SCHEDULE_TABLE } from '../src/maintenance/schedule-sql.js';
import { type ScheduledRun, startMaintenance } from '../src/maintenance/scheduler.js';
import { Metrics } from '../src/metrics/metrics.js';
import { cleanupOutbox } from '../src/outbox/postgres/cleanup.js';
import { Relay } from '../src/outbox/postgres/relay.js';
import { createPublisher } from '../src/publishers/create-publisher.js';
import { createRedis } from '../src/redis.js';
import { outboxCounts, seedOutbox } from './helpers/outbox-rows.js';
import {
  createTestDatabase,
  deleteRedisPrefix,
  REDIS_URL,
  redisPrefix,
  type TestDatabase,
  waitFor,
} from './helpers/services.js';

const DAY = 86_400_000;
let db: TestDatabase;

before(async () => {
  db = await createTestDatabase('maintenance');
});
after(async () => {
  await db.close();
});

/** An empty ring: partition 0 current (opened now), the others free and unsealed. */
async function resetOutbox() {
  await db.pool.query(`
    TRUNCATE exactly_once_outbox_events, exactly_once_outbox_parked;
    DO $$ BEGIN
      FOR p IN 0..7 LOOP
        EXECUTE format('ALTER TABLE exactly_once_outbox_events_%s DROP CONSTRAINT IF EXISTS exactly_once_outbox_events_%s_sealed', p, p);
      END LOOP;
    END $$;
    UPDATE exactly_once_outbox_meta SET current_part = 0;
    UPDATE exactly_once_outbox_parts
       SET opened_at = CASE WHEN part = 0 THEN now() END, closed_at = NULL, sealed_at = NULL;`);
}

async function sealed(part: number): Promise<boolean> {
  const { rows } = await db.pool.query<{ sealed: boolean }>(
    'SELECT sealed_at IS NOT NULL AS sealed FROM exactly_once_outbox_parts WHERE part = $1',
    [part],
  );
  return rows[0]?.sealed === true;
}

/** Pretend partition `part` opened (and, with `closedAgoMs`, closed) that long ago. */
async function age(part: number, openedAgoMs: number, closedAgoMs?: number) {
  await db.pool.query(
    `UPDATE exactly_once_outbox_parts
        SET opened_at = now() - make_interval(secs => $2::float8 / 1000),
            closed_at = CASE WHEN $3::float8 IS NULL THEN closed_at ELSE now() - make_interval(secs => $3::float8 / 1000) END
      WHERE part = $1`,
    [part, openedAgoMs, closedAgoMs ?? null],
  );
}

async function parts(): Promise<{ current: number; rows: Map<number, number> }> {
  const { rows } = await db.pool.query<{ part: number; n: number }>(
    'SELECT part, count(*)::int AS n FROM exactly_once_outbox_events GROUP BY part',
  );
  const meta = await db.pool.query<{ current_part: number }>('SELECT current_part FROM exactly_once_outbox_meta');
  return { current: meta.rows[0]?.current_part ?? -1, rows: new Map(rows.map((r) => [r.part, r.n])) };
}

describe('outbox cleanup (retention by partition)', () => {
  test('rotates to an empty partition, then truncates the closed one once cleanup_after has passed', async () => {
    await resetOutbox();
    await seedOutbox(db.pool, [{ status: 'published' }, { status: 'published' }, { status: 'published' }]);
    // Partition 0 is young: nothing happens.
    let result = await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY });
    assert.deepEqual(result, { deleted: 0, batches: 0, rotated: false });
    // Older than cleanup_after / 6: the pointer moves on; partition 0 just closed, so it is kept.
    await age(0, 2 * DAY);
    result = await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY });
    assert.deepEqual(result, { deleted: 0, batches: 0, rotated: true });
    assert.equal((await parts()).current, 1);
    await seedOutbox(db.pool, [{ status: 'pending' }]);
    assert.deepEqual(
      [...(await parts()).rows],
      [
        [0, 3],
        [1, 1],
      ],
      'new events go to the new partition',
    );
    // Closed more than cleanup_after ago: truncated, every one of its events at once.
    await age(0, 9 * DAY, 8 * DAY);
    result = await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY });
    assert.deepEqual(result, { deleted: 3, batches: 1, rotated: false });
    assert.deepEqual([...(await parts()).rows], [[1, 1]]);
    assert.deepEqual(await outboxCounts(db.pool), { pending: 1, published: 0, failed: 0 });
  });

  test('a partition holding an event no relay has handled yet is kept until one has', async () => {
    await resetOutbox();
    await seedOutbox(db.pool, [{ status: 'published' }, { status: 'pending', aggregateId: 'late' }]);
    await age(0, 9 * DAY);
    await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY }); // rotates
    await age(0, 9 * DAY, 8 * DAY);
    let result = await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY });
    assert.equal(result.deleted, 0, 'the pending event keeps its partition');
    assert.deepEqual(await outboxCounts(db.pool), { pending: 1, published: 1, failed: 0 });
    // A relay publishes it; then the partition goes.
    const redis = createRedis(REDIS_URL, silentLogger);
    const prefix = redisPrefix('maintenance');
    try {
      const config = configFromObject({
        database: { url: db.url },
        outbox: { queue_pattern: `${prefix}{priority}` },
      });
      const relay = new Relay({ config, pool: db.pool, publisher: createPublisher(config, { redis }) });
      assert.equal((await relay.publishDue()).published, 1);
      await relay.stop();
      result = await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY });
      assert.deepEqual(result, { deleted: 2, batches: 1, rotated: false });
    } finally {
      await deleteRedisPrefix(redis, prefix);
      redis.disconnect();
    }
  });

  test('a closed partition every relay has passed is sealed: a late write into it fails instead of going unread', async () => {
    await resetOutbox();
    await seedOutbox(db.pool, [
      { status: 'published' },
      { status: 'published' },
      { status: 'pending', aggregateId: 'p' },
    ]);
    await age(0, 2 * DAY);
    await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY }); // rotates: partition 1 takes new events
    await age(0, 2 * DAY, 120_000);
    await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY });
    assert.equal(await sealed(0), false, 'an event no relay has handled keeps it open to claims');
    const redis = createRedis(REDIS_URL, silentLogger);
    const prefix = redisPrefix('maintenance_seal');
    try {
      const config = configFromObject({ database: { url: db.url }, outbox: { queue_pattern: `${prefix}{priority}` } });
      const relay = new Relay({ config, pool: db.pool, publisher: createPublisher(config, { redis }) });
      assert.equal((await relay.publishDue()).published, 1);
      const result = await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY });
      assert.equal(result.deleted, 0, 'sealed, not dropped: it closed two minutes ago');
      assert.equal(await sealed(0), true);
      // A statement that still routes a row into it (it read the ring's pointer before it moved) is refused.
      await assert.rejects(
        db.pool.query(
          `INSERT INTO exactly_once_outbox_events (part, aggregate_id, event_type, payload) VALUES (0, 'x', 'e', '{}')`,
        ),
        (err: { code?: string }) => err.code === '23514',
      );
      assert.deepEqual(await outboxCounts(db.pool), { pending: 0, published: 3, failed: 0 }, 'its history is listed');
      // Events keep flowing through the current partition.
      await seedOutbox(db.pool, [{ status: 'pending', aggregateId: 'p' }]);
      assert.equal((await relay.publishDue()).published, 1);
      await relay.stop();
      await age(0, 9 * DAY, 8 * DAY);
      assert.equal((await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY })).deleted, 3);
      assert.equal(await sealed(0), false, 'free again once truncated');
      const { rows } = await db.pool.query(
        "SELECT 1 FROM pg_constraint WHERE conname LIKE 'exactly_once_outbox_events_%_sealed'",
      );
      assert.equal(rows.length, 0, 'the seal goes with the rows');
    } finally {
      await deleteRedisPrefix(redis, prefix);
      redis.disconnect();
    }
  });

  test('failed events older than cleanup_after are deleted; newer ones and pending parked events stay', async () => {
    await resetOutbox();
    await seedOutbox(db.pool, [
      { status: 'failed', ageMs: 8 * DAY },
      { status: 'failed', ageMs: 1000 },
      { status: 'pending', retryCount: 2, ageMs: 8 * DAY },
    ]);
    const result = await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY });
    assert.equal(result.deleted, 1);
    assert.deepEqual(await outboxCounts(db.pool), { pending: 1, published: 0, failed: 1 });
  });

  test('rejects a negative age naming the option', async () => {
    await assert.rejects(cleanupOutbox(db.pool, { olderThanMs: -1 }), { field: 'olderThanMs' });
  });
});

describe('runCleanup', () => {
  const config = configFromObject({ database: { url: 'postgres://unused' }, outbox: { cleanup_after: '168h' } });

  test('outbox: deletes, reports and counts', async () => {
    await resetOutbox();
    await seedOutbox(db.pool, [{ status: 'published' }, { status: 'published' }]);
    await age(0, 9 * DAY);
    await cleanupOutbox(db.pool, { olderThanMs: 7 * DAY }); // rotates; partition 0 closes now
    await age(0, 9 * DAY, 8 * DAY);
    const metrics = new Metrics({ processMetrics: false });
    const report = await runCleanup({ config, pool: db.pool, metrics }, 'outbox');
    assert.equal(report.outbox?.deleted, 2, 'the partition of the published event and the old failed event');
    assert.equal(report.idempotency, undefined);
    const text = await metrics.text();
    assert.match(text, /exactly_once_maintenance_runs_total\{type="outbox",result="ok"\} 1/);
    assert.match(text, /exactly_once_maintenance_deleted_total\{type="outbox"\} 2/);
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

const MINUTE = 60_000;

/** A timetable row whose tick fell due `agoMs` ago, on a whole second so times compare exactly in milliseconds. */
async function dueRow(type: string, intervalMs: number, agoMs: number, lease?: { by: string; forMs: number }) {
  const { rows } = await db.pool.query<{ next_run_at: Date; lease_until: Date | null }>(
    `INSERT INTO ${SCHEDULE_TABLE} (type, interval_ms, next_run_at, running_by, lease_until)
     VALUES ($1, $2, date_trunc('second', now()) - $3::float8 * interval '1 millisecond', $4,
             now() + $5::float8 * interval '1 millisecond')
     RETURNING next_run_at, lease_until`,
    [type, intervalMs, agoMs, lease?.by ?? null, lease ? lease.forMs : null],
  );
  return rows[0]!;
}

describe('the cleanup timetable', () => {
  test('90m: the tick after a run is exactly 90 minutes later, not rounded to whole hours', async () => {
    await db.pool.query(`DELETE FROM ${SCHEDULE_TABLE}`);
    const { next_run_at: due } = await dueRow('outbox', 90 * MINUTE, 1000);
    const tick = await claimTick(db.pool, 'outbox', 'r1', 60_000);
    assert.ok(tick, 'a due tick is claimed');
    assert.equal(tick.dueAt.getTime(), due.getTime());
    assert.equal(tick.nextRunAt.getTime() - due.getTime(), 90 * MINUTE);
    assert.equal(await claimTick(db.pool, 'outbox', 'r2', 60_000), undefined, 'the same tick is never claimed twice');
  });

  test('7d: exactly seven days later, whatever day of the month', async () => {
    await db.pool.query(`DELETE FROM ${SCHEDULE_TABLE}`);
    const { next_run_at: due } = await dueRow('outbox', 7 * DAY, 1000);
    const tick = await claimTick(db.pool, 'outbox', 'r1', 60_000);
    assert.equal(tick?.nextRunAt.getTime(), due.getTime() + 7 * DAY);
  });

  test('ticks missed during an outage run once, and the grid is kept', async () => {
    await db.pool.query(`DELETE FROM ${SCHEDULE_TABLE}`);
    const { next_run_at: due } = await dueRow('outbox', 90 * MINUTE, 200 * MINUTE);
    const tick = await claimTick(db.pool, 'outbox', 'r1', 60_000);
    // Due at 0, 90 and 180 minutes ago: one run, standing for the latest; the next tick is 270 minutes after the first.
    assert.equal(tick?.dueAt.getTime(), due.getTime() + 180 * MINUTE);
    assert.equal(tick?.nextRunAt.getTime(), due.getTime() + 270 * MINUTE);
  });

  test('a due tick waits while another replica holds the lease', async () => {
    await db.pool.query(`DELETE FROM ${SCHEDULE_TABLE}`);
    await dueRow('outbox', MINUTE, 1000, { by: 'busy-replica', forMs: 60_000 });
    assert.equal(await claimTick(db.pool, 'outbox', 'r1', 60_000), undefined);
  });
});

describe('replicas with maintenance started', () => {
  type Replica = Awaited<ReturnType<typeof startMaintenance>>;

  /** Start `n` replicas at once; if one fails, stop the others so none leaks into later tests. */
  async function replicas(n: number, options: Omit<Parameters<typeof startMaintenance>[0], 'connectionString'>) {
    const started = await Promise.allSettled(
      Array.from({ length: n }, (_, i) =>
        startMaintenance({ connectionString: db.url, maxSleepMs: 1000, replicaId: `replica-${i}`, ...options }),
      ),
    );
    const ok = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) {
      await Promise.all(ok.map((r) => r.stop()));
      throw failed.reason;
    }
    return { all: ok, stop: () => Promise.all(ok.map((r: Replica) => r.stop())) };
  }

  /** Runs in start order; each must start after the previous one finished (database clock). */
  function assertOneAtATime(runs: ScheduledRun[]) {
    const sorted = [...runs].sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime());
    for (let i = 1; i < sorted.length; i++) {
      const before = sorted[i - 1]!;
      const run = sorted[i]!;
      assert.ok(before.finishedAt, `run ${i - 1} kept its lease to the end`);
      assert.ok(
        run.startedAt.getTime() >= before.finishedAt.getTime(),
        `run ${i} (${run.replica}) started at ${run.startedAt.toISOString()}, before run ${i - 1} ` +
          `(${before.replica}) finished at ${before.finishedAt.toISOString()}`,
      );
    }
    return sorted;
  }

  test('a 1500ms interval runs every 1.5 s across three replicas, each tick exactly once', async () => {
    await db.pool.query(`DELETE FROM ${SCHEDULE_TABLE}`);
    const config = configFromObject({ database: { url: db.url }, outbox: { cleanup_interval: '1500ms' } });
    const runs: ScheduledRun[] = [];
    const cluster = await replicas(3, { config, pool: db.pool, onRun: (run) => runs.push(run) });
    try {
      assert.deepEqual(cluster.all[0]?.schedules, [{ type: 'outbox', intervalMs: 1500 }]);
      await waitFor(() => runs.length >= 5, 20_000, 'five scheduled runs');
    } finally {
      await cluster.stop();
    }
    const sorted = assertOneAtATime(runs);
    assert.ok(
      sorted.every((r) => r.report?.outbox !== undefined && r.error === undefined),
      'every run cleaned the outbox',
    );
    for (let i = 1; i < sorted.length; i++) {
      // Consecutive grid points: no tick ran twice (a gap of 0) and none was skipped (a gap of 3000).
      assert.equal(sorted[i]!.dueAt.getTime() - sorted[i - 1]!.dueAt.getTime(), 1500, `gap before run ${i}`);
    }
    for (const run of sorted) {
      const lateMs = run.startedAt.getTime() - run.dueAt.getTime();
      assert.ok(lateMs >= 0 && lateMs < 1000, `a run started ${lateMs} ms after its tick`);
    }
  });

  test('a run longer than the interval is never overlapped; the tick due meanwhile runs right after it', async () => {
    await db.pool.query(`DELETE FROM ${SCHEDULE_TABLE}`);
    const config = configFromObject({
      database: { url: db.url },
      idempotency: { cleanup_interval: '1000ms' },
      outbox: { enabled: false },
    });
    let active = 0;
    let maxActive = 0;
    let calls = 0;
    const idempotency = {
      // Stands in for the idempotency service's cleanup: the first run takes 2.5 intervals.
      cleanup: async () => {
        calls += 1;
        active += 1;
        maxActive = Math.max(maxActive, active);
        await new Promise((r) => setTimeout(r, calls === 1 ? 2500 : 20));
        active -= 1;
        return 0;
      },
    };
    const runs: ScheduledRun[] = [];
    const cluster = await replicas(3, { config, pool: db.pool, idempotency, onRun: (run) => runs.push(run) });
    try {
      await waitFor(() => runs.length >= 3, 20_000, 'three scheduled runs');
    } finally {
      await cluster.stop();
    }
    assert.equal(maxActive, 1, 'two cleanups ran at the same time');
    const [slow, next] = assertOneAtATime(runs);
    assert.ok(slow && next && slow.finishedAt);
    assert.ok(next.startedAt.getTime() - slow.finishedAt.getTime() < 500, 'the due tick waited for a later wake-up');
    // Ticks 1 and 2 s after the slow one fell due while it ran: they collapse into one run, on the grid.
    const gap = next.dueAt.getTime() - slow.dueAt.getTime();
    assert.ok(gap >= 2000 && gap % 1000 === 0, `gap of ${gap} ms between the slow run's tick and the next`);
    const { rows } = await db.pool.query(`SELECT type FROM ${SCHEDULE_TABLE}`);
    assert.deepEqual(rows, [{ type: 'idempotency' }], 'the disabled outbox cleanup is off the timetable');
  });

  test('a replica that died mid-run blocks the schedule only until its lease runs out', async () => {
    await db.pool.query(`DELETE FROM ${SCHEDULE_TABLE}`);
    const { next_run_at: due, lease_until } = await dueRow('outbox', 3_600_000, 10_000, { by: 'dead', forMs: 1500 });
    const config = configFromObject({ database: { url: db.url }, outbox: { cleanup_interval: '1h' } });
    const runs: ScheduledRun[] = [];
    const cluster = await replicas(2, { config, pool: db.pool, onRun: (run) => runs.push(run) });
    try {
      await waitFor(() => runs.length >= 1, 10_000, 'a run after the dead replica’s lease');
    } finally {
      await cluster.stop();
    }
    assert.equal(runs.length, 1);
    const run = runs[0]!;
    const afterLease = run.startedAt.getTime() - lease_until!.getTime();
    assert.ok(afterLease >= 0 && afterLease < 2000, `started ${afterLease} ms after the lease ran out`);
    assert.equal(run.dueAt.getTime(), due.getTime());
    const { rows } = await db.pool.query(`SELECT running_by, next_run_at FROM ${SCHEDULE_TABLE}`);
    assert.deepEqual(rows, [{ running_by: null, next_run_at: new Date(due.getTime() + 3_600_000) }]);
  });

  test('on a database without the timetable, start fails with EO_NOT_MIGRATED as the cause', async () => {
    const bare = await createTestDatabase('maintenance_bare', { migrate: false });
    try {
      const config = configFromObject({ database: { url: bare.url } });
      await assert.rejects(
        startMaintenance({ connectionString: bare.url, config, pool: bare.pool }),
        (err: unknown) => {
          assert.ok(err instanceof MaintenanceError);
          assert.equal((err.cause as { code?: string }).code, 'EO_NOT_MIGRATED');
          assert.match(err.message, /exactly_once_maintenance.*exactly-once migrate/);
          return true;
        },
      );
    } finally {
      await bare.close();
    }
  });
});
