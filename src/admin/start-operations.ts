import type { SqlExecutor } from '../db/executor.js';
import { type Logger, silentLogger } from '../logger.js';
import { type MaintenanceHandle, type MaintenanceOptions, startMaintenance } from '../maintenance/scheduler.js';
import type { Metrics } from '../metrics/metrics.js';
import type { AdminBackend } from './backend.js';
import type { HealthSource } from './readiness.js';
import { type AdminServerHandle, startAdminServer } from './server.js';

export interface OperationsOptions {
  manager: AdminBackend;
  /** Served at `/metrics` and fed by cleanup runs. */
  metrics?: Metrics | undefined;
  logger?: Logger | undefined;
  /** Overrides `admin.host`. */
  host?: string | undefined;
  /** Overrides `admin.port` (the relay's `--port`); 0 picks a free port. */
  port?: number | undefined;
  /** The relay this process runs; `/readyz` reports its ability to publish. */
  relay?: HealthSource | undefined;
  /** Pool for the admin API's reads and the backlog gauges (see `AdminOptions.readPool`). @defaultValue `manager.pool` */
  readPool?: SqlExecutor | undefined;
  /**
   * Schedule cleanup once per cluster (`false` to leave it to another process), or options for it.
   * @defaultValue true
   */
  maintenance?: boolean | Partial<Omit<MaintenanceOptions, 'config' | 'pool'>> | undefined;
}

export interface OperationsHandle {
  /** Absent when `admin.enabled` is false. */
  readonly admin: AdminServerHandle | undefined;
  /** Absent when maintenance is off or could not start (logged). */
  readonly maintenance: MaintenanceHandle | undefined;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Everything an operator gets next to a relay, in one call: the admin API with `/metrics`, `/healthz` and `/readyz`
 * on one port, and the cluster-wide cleanup schedule. A maintenance failure (an unmigrated database, say)
 * is logged and leaves the relay and admin API running; an admin port that cannot be bound is an error.
 *
 * @example
 * const metrics = new Metrics({ config: config.metrics, pool, logger });
 * const manager = new Manager(config, { pool, redis, logger, metrics });
 * await using ops = await startOperations({ manager, metrics, logger, port: 8080 });
 */
export async function startOperations(options: OperationsOptions): Promise<OperationsHandle> {
  const { manager, metrics } = options;
  const config = manager.config;
  const log = (options.logger ?? silentLogger).child({ component: 'operations' });

  let maintenance: MaintenanceHandle | undefined;
  if (options.maintenance !== false) {
    const extra = typeof options.maintenance === 'object' ? options.maintenance : {};
    try {
      maintenance = await startMaintenance({
        connectionString: config.database.url,
        config,
        pool: manager.pool,
        idempotency: manager.idempotency,
        metrics,
        logger: options.logger,
        ...extra,
      });
    } catch (err) {
      log.error({ err }, 'scheduled cleanup is not running; `exactly-once cleanup` still works by hand');
    }
  }

  let admin: AdminServerHandle | undefined;
  if (config.admin.enabled) {
    try {
      admin = await startAdminServer({
        manager,
        metrics,
        logger: options.logger,
        host: options.host,
        port: options.port,
        relay: options.relay,
        readPool: options.readPool,
      });
    } catch (err) {
      await maintenance?.stop();
      throw err;
    }
  }

  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      await admin?.close();
      await maintenance?.stop();
    })();
    return closed;
  };
  return { admin, maintenance, close, [Symbol.asyncDispose]: close };
}
