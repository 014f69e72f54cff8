import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { createPool } from '../db/pool.js';
import { ExactlyOnceError, MaintenanceError, NotMigratedError, PgErrorCode, sqlState } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import { type CleanupDeps, type CleanupReport, runCleanup } from './run-cleanup.js';
import {
  claimTick,
  msUntilClaimable,
  registerSchedule,
  releaseLease,
  renewLease,
  SCHEDULE_TABLE,
  unregisterSchedule,
} from './schedule-sql.js';

export { SCHEDULE_TABLE };

export const SCHEDULED_CLEANUP_TYPES = ['idempotency', 'outbox'] as const;
export type ScheduledCleanupType = (typeof SCHEDULED_CLEANUP_TYPES)[number];

/** One scheduled cleanup this process ran. Times are the database's clock. */
export interface ScheduledRun {
  type: ScheduledCleanupType;
  /** The tick it ran for: a point on the `interval` grid. Each tick appears in exactly one run in the cluster. */
  dueAt: Date;
  startedAt: Date;
  /** Absent when the lease was lost during the run (another replica may have started the next one). */
  finishedAt: Date | undefined;
  /** Which replica ran it (`MaintenanceOptions.replicaId`). */
  replica: string;
  report?: CleanupReport;
  error?: unknown;
}

export interface MaintenanceOptions extends CleanupDeps {
  /** Postgres URL for the scheduler's own small pool (the database the outbox lives in). */
  connectionString: string;
  /** Intervals in milliseconds. @defaultValue `idempotency.cleanup_interval` and `outbox.cleanup_interval` */
  intervals?: Partial<Record<ScheduledCleanupType, number>>;
  /**
   * A run holds the schedule this long, renewed every third of it while it lasts; a replica that dies mid-run
   * blocks the next tick for at most this long. @defaultValue 60000
   */
  leaseMs?: number;
  /**
   * The longest a replica sleeps before it looks at the timetable again (another replica's deploy may have shortened
   * the interval). @defaultValue 30000
   */
  maxSleepMs?: number;
  /** Names this replica in `running_by` and in logs. @defaultValue `<hostname>:<pid>:<random>` */
  replicaId?: string;
  /** Called after each run this process made; for logs, metrics and tests. */
  onRun?: (run: ScheduledRun) => void;
}

export interface MaintenanceHandle {
  /** The cleanups this process takes part in, with the interval it registered. */
  readonly schedules: readonly { type: ScheduledCleanupType; intervalMs: number }[];
  readonly replicaId: string;
  /** Stop taking ticks; waits for a run in progress to finish. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Run cleanup at its exact configured interval, once per cluster however many replicas call this. The timetable is a
 * row per cleanup type in `exactly_once_maintenance` (created by `exactly-once migrate`); each replica sleeps until
 * the next tick and then tries to claim it with one `UPDATE ... WHERE next_run_at <= now() RETURNING`: exactly one
 * replica wins each tick, and its lease keeps any other replica from starting the next tick before this run ends.
 * Ticks sit on a grid of the interval (`90m` runs every 90 minutes, `7d` every seven days), measured on the
 * database's clock.
 *
 * Only the types this process can run take part: `idempotency` needs `deps.idempotency` and the feature enabled;
 * `outbox` needs the outbox enabled. A type whose feature is disabled is taken off the timetable, so the cluster
 * follows the config deployed last.
 *
 * @example
 * await using maintenance = await startMaintenance({ connectionString: config.database.url, config, pool, idempotency });
 */
export async function startMaintenance(options: MaintenanceOptions): Promise<MaintenanceHandle> {
  const replicaId = options.replicaId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const log = (options.logger ?? silentLogger).child({ component: 'maintenance', replica: replicaId });
  const leaseMs = options.leaseMs ?? 60_000;
  const maxSleepMs = options.maxSleepMs ?? 30_000;
  // Its own two connections: the timetable's statements never wait behind the relay's pool, and a run's heartbeat
  // never waits behind another type's claim.
  const pool = createPool(options.connectionString, log, {
    max: 2,
    statementTimeoutMs: 10_000,
    application_name: 'exactly-once-maintenance',
  });

  const intervals: Record<ScheduledCleanupType, number> = {
    idempotency: options.intervals?.idempotency ?? options.config.idempotency.cleanupInterval,
    outbox: options.intervals?.outbox ?? options.config.outbox.cleanupInterval,
  };
  const runs = (type: ScheduledCleanupType) =>
    type === 'idempotency'
      ? options.config.idempotency.enabled && !!options.idempotency
      : options.config.outbox.enabled;
  const schedules = SCHEDULED_CLEANUP_TYPES.filter(runs).map((type) => ({ type, intervalMs: intervals[type] }));

  try {
    for (const type of SCHEDULED_CLEANUP_TYPES) {
      if (runs(type)) await registerSchedule(pool, type, intervals[type]);
      else await unregisterSchedule(pool, type);
    }
  } catch (err) {
    await pool.end().catch(() => {});
    const cause =
      sqlState(err) === PgErrorCode.undefinedTable ? new NotMigratedError(SCHEDULE_TABLE, { cause: err }) : err;
    throw new MaintenanceError(`could not schedule cleanup: ${(cause as Error).message}`, { cause });
  }

  const stopping = new AbortController();
  const loops = schedules.map(({ type, intervalMs }) => {
    log.info({ type, intervalMs }, 'cleanup scheduled');
    return tickLoop({ options, pool, log, type, replicaId, leaseMs, maxSleepMs, signal: stopping.signal });
  });

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      stopping.abort();
      await Promise.all(loops);
      await pool.end().catch((err) => log.warn({ err }, 'maintenance pool did not close cleanly'));
    })();
    return stopped;
  };
  return { schedules, replicaId, stop, [Symbol.asyncDispose]: stop };
}

interface LoopContext {
  options: MaintenanceOptions;
  pool: ReturnType<typeof createPool>;
  log: Logger;
  type: ScheduledCleanupType;
  replicaId: string;
  leaseMs: number;
  maxSleepMs: number;
  signal: AbortSignal;
}

/** Claim-or-sleep until stopped. Never throws: a database error is logged and the loop tries again later. */
async function tickLoop(ctx: LoopContext): Promise<void> {
  const { pool, log, type, signal } = ctx;
  let failures = 0;
  while (!signal.aborted) {
    let waitMs: number;
    try {
      const tick = await claimTick(pool, type, ctx.replicaId, ctx.leaseMs);
      // After a run, look again at once: a tick that came due while it ran is ours to run next.
      if (tick) await runTick(ctx, tick);
      waitMs = tick ? 0 : ((await msUntilClaimable(pool, type)) ?? ctx.maxSleepMs);
      failures = 0;
    } catch (err) {
      failures += 1;
      waitMs = Math.min(ctx.maxSleepMs, 500 * 2 ** Math.min(failures, 6));
      log.warn({ err, type, retryInMs: waitMs }, 'cleanup schedule unavailable; trying again');
    }
    if (waitMs > 0) await sleep(Math.min(waitMs, ctx.maxSleepMs), undefined, { signal }).catch(() => {});
  }
}

async function runTick(ctx: LoopContext, tick: { dueAt: Date; startedAt: Date }): Promise<void> {
  const { pool, log, type, replicaId, leaseMs, options } = ctx;
  let leaseLost = false;
  const heartbeat = setInterval(() => {
    renewLease(pool, type, replicaId, leaseMs).then(
      (ours) => {
        if (!ours && !leaseLost) {
          leaseLost = true;
          log.error({ type }, 'cleanup lease was lost during the run; another replica may run the next tick');
        }
      },
      (err) => log.warn({ err, type }, 'could not renew the cleanup lease'),
    );
  }, leaseMs / 3);

  let report: CleanupReport | undefined;
  let error: unknown;
  try {
    report = await runCleanup(options, type);
    log.info({ type, dueAt: tick.dueAt, report }, 'scheduled cleanup ran');
  } catch (err) {
    if (err instanceof ExactlyOnceError && err.code === 'EO_FEATURE_DISABLED') {
      log.info({ type }, 'scheduled cleanup skipped: feature disabled');
    } else {
      log.error({ err, type }, 'scheduled cleanup failed; the next tick tries again');
    }
    error = err;
  } finally {
    clearInterval(heartbeat);
  }
  const failure = error === undefined ? undefined : error instanceof Error ? error.message : String(error);
  const finishedAt = await releaseLease(pool, type, replicaId, failure).catch((err) => {
    // The lease then runs out by itself after leaseMs.
    log.warn({ err, type }, 'could not release the cleanup lease');
    return undefined;
  });
  options.onRun?.({
    type,
    dueAt: tick.dueAt,
    startedAt: tick.startedAt,
    finishedAt,
    replica: replicaId,
    report,
    error,
  });
}
