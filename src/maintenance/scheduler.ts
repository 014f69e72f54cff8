import PgBoss from 'pg-boss';
import { ExactlyOnceError, MaintenanceError, PgErrorCode, sqlState } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import { intervalToCron } from './cron.js';
import { type CleanupDeps, type CleanupReport, runCleanup } from './run-cleanup.js';

/** pg-boss's tables live in their own schema, so a pg-boss of another version in the same database never clashes. */
export const MAINTENANCE_SCHEMA = 'exactly_once_pgboss';
/** One pg-boss queue (and schedule of the same name) per cleanup type. */
export const CLEANUP_QUEUES = {
  idempotency: 'exactly-once-cleanup-idempotency',
  outbox: 'exactly-once-cleanup-outbox',
} as const;

export type ScheduledCleanupType = keyof typeof CLEANUP_QUEUES;

/** One cleanup this process ran for a pg-boss job (a cron tick or `trigger()`). */
export interface ScheduledRun {
  type: ScheduledCleanupType;
  jobId: string;
  report?: CleanupReport;
  error?: unknown;
}

export interface MaintenanceOptions extends CleanupDeps {
  /** Postgres URL for pg-boss's own small pool (the database the outbox lives in). */
  connectionString: string;
  /** @defaultValue "exactly_once_pgboss" */
  schema?: string;
  /**
   * Register the cron schedules. Every replica may do so (it is an upsert); pg-boss's timekeeper then sends each
   * tick once per cluster, and one replica's worker takes the job. @defaultValue true
   */
  schedule?: boolean;
  /** Cron expressions. @defaultValue from `idempotency.cleanup_interval` and `outbox.cleanup_interval` */
  cron?: Partial<Record<ScheduledCleanupType, string>>;
  /** How often this replica's workers look for a cleanup job, in seconds (>= 0.5). @defaultValue 10 */
  pollingIntervalSeconds?: number;
  /** Extra pg-boss constructor options (tests shorten `cronMonitorIntervalSeconds`). */
  boss?: Partial<PgBoss.ConstructorOptions>;
  /** Called after each job this process ran; for logs, metrics and tests. */
  onRun?: (run: ScheduledRun) => void;
}

export interface MaintenanceHandle {
  /** The schedules this process registered (type, pg-boss queue, cron). */
  readonly schedules: readonly { type: ScheduledCleanupType; queue: string; cron: string }[];
  /** Enqueue a cleanup job now; whichever replica's worker is free runs it. Resolves to the job id. */
  trigger(type: ScheduledCleanupType): Promise<string | null>;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Schedule cleanup once per cluster with pg-boss cron, and work cleanup jobs in this process. However many replicas
 * call this, each tick becomes one pg-boss job (pg-boss's timekeeper is itself cluster-wide: a row lock picks the
 * replica that evaluates cron, and the tick's job carries a one-minute singleton key), and a job is fetched by
 * one worker (`FOR UPDATE SKIP LOCKED`). The queues use pg-boss's `singleton` policy, so a slow run is never
 * overlapped by the next tick's.
 *
 * Only the types this process can run are scheduled and worked: `idempotency` needs `deps.idempotency` and the
 * feature enabled; `outbox` needs the outbox enabled. A disabled type is unscheduled, so the cluster follows the
 * config most recently deployed.
 *
 * @example
 * await using maintenance = await startMaintenance({ connectionString: config.database.url, config, pool, idempotency });
 */
export async function startMaintenance(options: MaintenanceOptions): Promise<MaintenanceHandle> {
  const log = (options.logger ?? silentLogger).child({ component: 'maintenance' });
  const boss = new PgBoss({
    connectionString: options.connectionString,
    schema: options.schema ?? MAINTENANCE_SCHEMA,
    max: 3,
    application_name: 'exactly-once-maintenance',
    ...options.boss,
  });
  // An 'error' event without a listener would crash the process; pg-boss retries on its own.
  boss.on('error', (err) => log.warn({ err }, 'pg-boss background error'));
  try {
    await boss.start();
  } catch (err) {
    throw new MaintenanceError(`could not start pg-boss: ${(err as Error).message}`, { cause: err });
  }

  const types: ScheduledCleanupType[] = [];
  const disabled: ScheduledCleanupType[] = [];
  if (options.config.idempotency.enabled && options.idempotency) types.push('idempotency');
  else disabled.push('idempotency');
  if (options.config.outbox.enabled) types.push('outbox');
  else disabled.push('outbox');

  const cron: Record<ScheduledCleanupType, string> = {
    idempotency: options.cron?.idempotency ?? intervalToCron(options.config.idempotency.cleanupInterval),
    outbox: options.cron?.outbox ?? intervalToCron(options.config.outbox.cleanupInterval),
  };
  const schedules = types.map((type) => ({ type, queue: CLEANUP_QUEUES[type], cron: cron[type] }));

  try {
    // Replicas starting together deadlock inside pg-boss's DDL (create_queue makes a partition table); retry.
    await retryOnDeadlock(async () => {
      for (const { queue } of schedules) await ensureQueue(boss, queue);
      if (options.schedule === false) return;
      for (const { queue, cron: expression } of schedules) await boss.schedule(queue, expression, {}, { tz: 'UTC' });
      for (const type of disabled) await boss.unschedule(CLEANUP_QUEUES[type]);
    });
    for (const { type, queue, cron: expression } of schedules) {
      await boss.work<Record<string, never>>(
        queue,
        { pollingIntervalSeconds: options.pollingIntervalSeconds ?? 10 },
        async ([job]) => {
          if (job) await runJob(options, log, type, job.id);
        },
      );
      if (options.schedule !== false) log.info({ type, cron: expression }, 'cleanup scheduled');
    }
  } catch (err) {
    await boss.stop({ graceful: false }).catch(() => {});
    throw new MaintenanceError(`could not schedule cleanup: ${(err as Error).message}`, { cause: err });
  }

  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= boss.stop({ graceful: true, wait: true, timeout: 30_000 }).catch((err) => {
      log.warn({ err }, 'pg-boss did not stop cleanly');
    });
    return stopped;
  };
  return {
    schedules,
    async trigger(type) {
      if (!types.includes(type)) throw new MaintenanceError(`cleanup type "${type}" is not scheduled in this process`);
      return boss.send(CLEANUP_QUEUES[type], {});
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** A cleanup job: never throws out of a feature that is off; real failures fail the pg-boss job (after logging). */
async function runJob(options: MaintenanceOptions, log: Logger, type: ScheduledCleanupType, jobId: string) {
  try {
    const report = await runCleanup(options, type);
    log.info({ type, jobId, report }, 'scheduled cleanup ran');
    options.onRun?.({ type, jobId, report });
  } catch (err) {
    options.onRun?.({ type, jobId, error: err });
    if (err instanceof ExactlyOnceError && err.code === 'EO_FEATURE_DISABLED') {
      log.info({ type, jobId }, 'scheduled cleanup skipped: feature disabled');
      return;
    }
    log.error({ err, type, jobId }, 'scheduled cleanup failed; the next tick tries again');
    throw err;
  }
}

async function retryOnDeadlock(work: () => Promise<void>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (err) {
      if (sqlState(err) !== PgErrorCode.deadlockDetected || attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 200 * attempt));
    }
  }
}

/** Create the queue unless it exists; replicas starting together race here, and losing the race is fine. */
async function ensureQueue(boss: PgBoss, queue: string): Promise<void> {
  if (await boss.getQueue(queue)) return;
  try {
    // retryLimit 0: a failed cleanup waits for the next tick instead of piling up retries.
    await boss.createQueue(queue, { name: queue, policy: 'singleton', retryLimit: 0, expireInSeconds: 3600 });
  } catch (err) {
    if (!(await boss.getQueue(queue))) throw err;
  }
}
