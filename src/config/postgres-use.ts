import type { Config } from './load-config.js';

/**
 * What in this config keeps data in Postgres, as the `exactly_once.*` keys that say so: the outbox table
 * (`outbox.storage_type: database`) and the idempotency keys (`idempotency.storage.type: database`, the default).
 * Empty when neither does: an app that keeps its state in Redis (`outbox.storage_type: redis`, idempotency keys in
 * Redis or memory, or idempotency off) runs `exactly-once relay` with no Postgres at all; the relay then skips the
 * connection check and `--wait`, the connection budget, the cleanup timetable and the Postgres readiness probe.
 *
 * @example if (postgresUses(config).length === 0) logger.info('Postgres is not used');
 */
export function postgresUses(config: Pick<Config, 'outbox' | 'idempotency'>): string[] {
  const uses: string[] = [];
  if (config.outbox.enabled && config.outbox.storageType === 'database') uses.push('outbox.storage_type: database');
  if (config.idempotency.enabled && config.idempotency.storage.type === 'database') {
    uses.push('idempotency.storage.type: database');
  }
  return uses;
}
