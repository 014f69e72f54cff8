import pg from 'pg';
import type { Logger } from '../logger.js';

// Postgres returns int8 (our seq column) as a string by default; keep it a string so ids never lose precision.

/**
 * A pg pool that logs and survives the errors an idle client raises when Postgres restarts
 * (without a listener those crash the process).
 */
export function createPool(url: string, logger: Logger, options: pg.PoolConfig = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, ...options });
  pool.on('error', (err) => logger.warn({ err }, 'idle Postgres connection failed; it will be replaced'));
  return pool;
}
