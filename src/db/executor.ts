import { CompiledQuery } from 'kysely';
import { UnsupportedExecutorError } from '../errors.js';

/** The one thing the writer needs from a caller's transaction: run a parameterised statement. */
export interface SqlExecutor {
  query<R extends Record<string, unknown>>(text: string, params: readonly unknown[]): Promise<{ rows: R[] }>;
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
 * Adapt the caller's transaction to an executor: a Kysely `Transaction` (or `Kysely`), or a pg client.
 * Both run the statement on the caller's own connection, inside whatever transaction it has open.
 *
 * @example await storeInOutbox(fromKysely(trx), event) // same as storeInOutbox(trx, event)
 */
export function toExecutor(trx: unknown): SqlExecutor {
  if (isKysely(trx)) return fromKysely(trx);
  if (isPg(trx)) return fromPg(trx);
  throw new UnsupportedExecutorError();
}

export function fromKysely(trx: KyselyLike): SqlExecutor {
  return {
    async query<R>(text: string, params: readonly unknown[]) {
      const result = await trx.executeQuery(CompiledQuery.raw(text, [...params]));
      return { rows: result.rows as R[] };
    },
  };
}

export function fromPg(client: PgLike): SqlExecutor {
  return {
    async query<R>(text: string, params: readonly unknown[]) {
      const result = await client.query(text, [...params]);
      return { rows: result.rows as R[] };
    },
  };
}

function isKysely(value: unknown): value is KyselyLike {
  return typeof value === 'object' && value !== null && typeof (value as KyselyLike).executeQuery === 'function';
}

function isPg(value: unknown): value is PgLike {
  return typeof value === 'object' && value !== null && typeof (value as PgLike).query === 'function';
}
