import type pg from 'pg';
import type { Config } from '../../config/load-config.js';
import { createPool, poolTimeouts } from '../../db/pool.js';
import { IdempotencyService } from '../../idempotency/index.js';
import type { Logger } from '../../logger.js';
import { createOutboxInspector, type OutboxInspector } from '../../outbox/inspector.js';
import { createRedisClient, type RedisClient } from '../../redis.js';
import type { ParsedFlags } from '../command.js';
import { cliContext } from '../context.js';

/** Connections for one operator command (stats, outbox, cleanup), opened on first use and closed by `close()`. */
export interface OperatorContext {
  config: Config;
  logger: Logger;
  pool(): pg.Pool;
  redis(): RedisClient;
  /** The outbox `outbox.storage_type` names (Postgres, or Redis). */
  outbox(): OutboxInspector;
  /** `undefined` when idempotency is disabled in config. */
  idempotency(): IdempotencyService | undefined;
  close(): Promise<void>;
}

/**
 * Config and lazily opened connections for an operator command. Logs only at `warn` and above (LOG_LEVEL wins), so
 * stdout is the command's answer.
 *
 * @example const ctx = operatorContext(values); try { ... } finally { await ctx.close(); }
 */
export function operatorContext(flags: ParsedFlags['values']): OperatorContext {
  const { config, logger } = cliContext(flags, { logLevel: 'warn' });
  let pool: pg.Pool | undefined;
  let redis: RedisClient | undefined;
  let service: IdempotencyService | undefined;
  const ctx: OperatorContext = {
    config,
    logger,
    pool: () => {
      pool ??= createPool(config.database.url, logger, { max: 2, ...poolTimeouts(config.database) });
      return pool;
    },
    redis: () => {
      // Operator commands are one-shot: queue commands until connected instead of failing the first one.
      redis ??= createRedisClient(config.redis, logger, { enableOfflineQueue: true });
      return redis;
    },
    outbox: () => createOutboxInspector(config, { pool: ctx.pool, redis: ctx.redis }),
    idempotency: () => {
      if (!config.idempotency.enabled) return undefined;
      service ??= new IdempotencyService({ config, pool: ctx.pool(), redis: ctx.redis(), logger });
      return service;
    },
    async close() {
      await service?.close();
      redis?.disconnect();
      await pool?.end();
    },
  };
  return ctx;
}

/** Print `value` as JSON (for `--json`) or run the human formatter. */
export function output(json: boolean, value: unknown, human: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : human());
}
