import type { Config } from '../config/load-config.js';
import type { SqlExecutor } from '../db/executor.js';
import { FeatureDisabledError, InvalidParameterError } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import { cleanupOutbox } from '../outbox/postgres/cleanup.js';

export const CLEANUP_TYPES = ['idempotency', 'outbox', 'all'] as const;
export type CleanupRequest = (typeof CLEANUP_TYPES)[number];

/** What the idempotency service offers cleanup: delete expired records, return how many. */
export interface IdempotencyCleaner {
  cleanup(): Promise<number | { deleted: number }>;
}

/** Where `cleanupRun` counts land (the `Metrics` class implements it). */
export interface CleanupMetrics {
  cleanupRun(type: 'idempotency' | 'outbox', deleted: number, ok: boolean): void;
}

export interface CleanupDeps {
  config: Pick<Config, 'idempotency' | 'outbox'>;
  /** Postgres pool holding the outbox table. */
  pool: SqlExecutor;
  /** The idempotency service (or store wrapper). Without it, idempotency cleanup is reported as skipped. */
  idempotency?: IdempotencyCleaner | undefined;
  metrics?: CleanupMetrics | undefined;
  logger?: Logger | undefined;
}

/** One cleanup's outcome. A type that did not run is absent. */
export interface CleanupReport {
  idempotency?: { deleted: number };
  outbox?: { deleted: number; batches: number };
  /** Types `all` left out, with why (feature disabled, no idempotency service). */
  skipped?: { type: 'idempotency' | 'outbox'; reason: string }[];
  durationMs: number;
}

/**
 * Run cleanup now, in this process: expired idempotency keys (through the service's `cleanup()`), published and
 * failed outbox rows older than `outbox.cleanup_after` (through `cleanupOutbox`). Naming a disabled feature
 * explicitly throws `FeatureDisabledError`; `all` skips disabled ones. The scheduler, the CLI and the admin endpoint
 * all come here.
 *
 * @example const report = await runCleanup({ config, pool, idempotency: service }, 'all');
 */
export async function runCleanup(deps: CleanupDeps, type: CleanupRequest = 'all'): Promise<CleanupReport> {
  if (!CLEANUP_TYPES.includes(type)) {
    throw new InvalidParameterError('type', `must be one of ${CLEANUP_TYPES.join(', ')}`);
  }
  const log = (deps.logger ?? silentLogger).child({ component: 'maintenance' });
  const started = performance.now();
  const report: CleanupReport = { durationMs: 0 };
  const skipped: NonNullable<CleanupReport['skipped']> = [];

  if (type === 'idempotency' || type === 'all') {
    if (!deps.config.idempotency.enabled) {
      if (type === 'idempotency') throw new FeatureDisabledError('idempotency');
      skipped.push({ type: 'idempotency', reason: 'idempotency is disabled' });
    } else if (!deps.idempotency) {
      if (type === 'idempotency') throw new FeatureDisabledError('idempotency');
      skipped.push({ type: 'idempotency', reason: 'no idempotency service configured' });
    } else {
      const service = deps.idempotency;
      const deleted = await counted(deps, 'idempotency', async () => {
        const result = await service.cleanup();
        return typeof result === 'number' ? result : result.deleted;
      });
      report.idempotency = { deleted };
      log.info({ type: 'idempotency', deleted }, 'cleanup finished');
    }
  }

  if (type === 'outbox' || type === 'all') {
    if (!deps.config.outbox.enabled) {
      if (type === 'outbox') throw new FeatureDisabledError('outbox');
      skipped.push({ type: 'outbox', reason: 'outbox is disabled' });
    } else {
      let batches = 0;
      const deleted = await counted(deps, 'outbox', async () => {
        const result = await cleanupOutbox(deps.pool, { olderThanMs: deps.config.outbox.cleanupAfter });
        batches = result.batches;
        return result.deleted;
      });
      report.outbox = { deleted, batches };
      log.info({ type: 'outbox', deleted, batches }, 'cleanup finished');
    }
  }

  if (skipped.length > 0) report.skipped = skipped;
  report.durationMs = Math.round(performance.now() - started);
  return report;
}

async function counted(
  deps: CleanupDeps,
  type: 'idempotency' | 'outbox',
  work: () => Promise<number>,
): Promise<number> {
  try {
    const deleted = await work();
    deps.metrics?.cleanupRun(type, deleted, true);
    return deleted;
  } catch (err) {
    deps.metrics?.cleanupRun(type, 0, false);
    throw err;
  }
}
