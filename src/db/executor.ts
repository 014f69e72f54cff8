import { CompiledQuery } from 'kysely';
import { UnsupportedExecutorError } from '../errors.js';

/**
 * Anything that runs a parameterised statement: a pg `Pool`, `Client` or `PoolClient` as they are (the signature is
 * pg's own, so they fit structurally), or a caller's Kysely transaction adapted by `toExecutor`. The writer, the
 * stores, the inspection queries and the maintenance schedule all take this one type.
 */
export interface SqlExecutor {
  // biome-ignore lint/suspicious/noExplicitAny: pg's own default, so untyped rows stay as easy to read as with pg
  query<R extends Record<string, unknown> = any>(text: string, params?: readonly unknown[]): Promise<{ rows: R[] }>;
}

/** A Kysely instance or transaction, structurally (so we do not depend on the caller's Kysely copy). */
interface KyselyLike {
  executeQuery(query: CompiledQuery): Promise<{ rows: unknown[] }>;
}

/** A pg Client, PoolClient or Pool, structurally. */
interface PgLike {
  query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }>;
}

/**
 * Adapt a Kysely instance or transaction, or a pg client or pool, to an executor. Through a `Transaction` or a
 * client the statement runs on the caller's own connection, inside whatever transaction it has open; see
 * `autocommitHandle` for the handles that do not.
 *
 * @example const exec = toExecutor(trx); await exec.query('SELECT 1', []);
 */
export function toExecutor(trx: unknown): SqlExecutor {
  if (isKysely(trx)) return fromKysely(trx);
  if (isPg(trx)) return fromPg(trx);
  throw new UnsupportedExecutorError();
}

export function fromKysely(trx: KyselyLike): SqlExecutor {
  const executor: SqlExecutor = {
    async query<R>(text: string, params: readonly unknown[] = []) {
      const result = await trx.executeQuery(CompiledQuery.raw(text, [...params]));
      return { rows: result.rows as R[] };
    },
  };
  if (autocommitHandle(trx)) autocommitExecutors.add(executor);
  return executor;
}

export function fromPg(client: PgLike): SqlExecutor {
  const executor: SqlExecutor = {
    async query<R>(text: string, params: readonly unknown[] = []) {
      const result = await client.query(text, [...params]);
      return { rows: result.rows as R[] };
    },
  };
  if (autocommitHandle(client)) autocommitExecutors.add(executor);
  return executor;
}

// Executors built on a pool or a root Kysely, so that wrapping one (`fromPg(pool)`) cannot slip past the writer's
// "must be the caller's transaction" check (G1).
const autocommitExecutors = new WeakSet<SqlExecutor>();

/** What `autocommitHandle` answers, named for error messages. */
export const AutocommitHandle = {
  pool: 'a pg Pool',
  kysely: 'a Kysely instance',
  executor: 'an executor built on a pg Pool or a Kysely instance',
} as const;
export type AutocommitHandle = (typeof AutocommitHandle)[keyof typeof AutocommitHandle];

/**
 * What `value` is, when it runs each statement in autocommit on whichever pooled connection is free — a pg `Pool`, a
 * root `Kysely` instance (not a `Transaction`), or an executor built on one — else `undefined`. Used by
 * `storeInOutbox` to refuse handles that cannot share the caller's transaction. Structural, so it works with the
 * caller's own copies of pg and Kysely.
 */
export function autocommitHandle(value: unknown): AutocommitHandle | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  if (autocommitExecutors.has(value as SqlExecutor)) return AutocommitHandle.executor;
  const v = value as { isTransaction?: unknown; totalCount?: unknown; idleCount?: unknown; connect?: unknown };
  if (isKysely(value)) return v.isTransaction === true ? undefined : AutocommitHandle.kysely;
  // pg.Pool (and pg-pool compatibles) count their clients; a Client or PoolClient has no such fields.
  if (typeof v.totalCount === 'number' && typeof v.idleCount === 'number' && typeof v.connect === 'function') {
    return AutocommitHandle.pool;
  }
  return undefined;
}

function isKysely(value: unknown): value is KyselyLike {
  return typeof value === 'object' && value !== null && typeof (value as KyselyLike).executeQuery === 'function';
}

function isPg(value: unknown): value is PgLike {
  return typeof value === 'object' && value !== null && typeof (value as PgLike).query === 'function';
}
