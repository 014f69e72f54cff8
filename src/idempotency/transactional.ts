import { Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient, type Transaction } from 'kysely';
import type pg from 'pg';
import { fromKysely } from '../db/executor.js';
import { sqlState } from '../errors.js';
import type { DatabaseStore } from './database-store.js';
import type { KeyRef } from './keys.js';
import type { ClaimRequest, IdempotencyRecord } from './types.js';

/**
 * The processor of the transactional form: it gets the Kysely transaction (and the pg client under it) in which the
 * key will be recorded as completed. Everything it writes through either commits together with the key, or not at all.
 */
// biome-ignore lint/suspicious/noExplicitAny: the caller's database schema type, when it has one
export type TransactionalProcessor<T, DB = any> = (trx: Transaction<DB>, client: pg.PoolClient) => Promise<T>;

export type AttemptOutcome<T> =
  | { readonly kind: 'ran'; readonly result: T; readonly json: string }
  | { readonly kind: 'completed'; readonly record: IdempotencyRecord }
  /** `record` is absent when the holder is a transaction that did not finish within our wait (lock timeout). */
  | { readonly kind: 'in_progress'; readonly record?: IdempotencyRecord };

/** What the transactional form needs of a store: its own connection, and claim/complete on that connection. */
export type TransactionalStore = Pick<DatabaseStore, 'connect' | 'claim' | 'complete'>;

export interface TransactionalAttempt {
  db: TransactionalStore;
  ref: KeyRef;
  claim: ClaimRequest;
  /** Epoch ms after which waiting for another transaction's claim gives up. */
  deadline: number;
  /** `storage.database.transaction_timeout`. */
  transactionTimeoutMs: number;
}

const LOCK_NOT_AVAILABLE = '55P03';

/**
 * One try of the transactional form, on a dedicated pool client:
 *
 * BEGIN; claim (the same INSERT ... ON CONFLICT as the plain form, so it too takes over a plain-form claim only once
 * its lease lapsed, never because its TTL ran out: G4); run the processor; mark completed; COMMIT.
 *
 * A concurrent duplicate's INSERT blocks on our uncommitted row until we commit (it then sees `completed`) or roll
 * back (it then claims); `lock_timeout` bounds that wait by the caller's remaining wait time and is reset to the
 * session's value before the processor runs, so its own statements are unaffected. `statement_timeout` and
 * `idle_in_transaction_session_timeout` are set to `transaction_timeout` (Postgres 15 has no whole-transaction
 * timeout), so a hung worker cannot hold the key's row lock for long; a killed one releases it at once (its connection
 * closes and Postgres rolls back, leaving nothing behind).
 */
export async function attemptInTransaction<T, DB>(
  attempt: TransactionalAttempt,
  run: (trx: Transaction<DB>, client: pg.PoolClient) => Promise<{ result: T; json: string }>,
): Promise<AttemptOutcome<T>> {
  const { db, ref, claim } = attempt;
  const client = await db.connect();
  // A checked-out client has no pool listener: without ours, a server-side disconnect would crash the process.
  const ignore = () => {};
  client.on('error', ignore);
  try {
    return await onClient<DB>(client)
      .transaction()
      .execute(async (trx): Promise<AttemptOutcome<T>> => {
        const exec = fromKysely(trx);
        const lockMs = Math.max(1, Math.ceil(attempt.deadline - Date.now()));
        const { rows } = await exec.query<{ prev: string }>(
          `SELECT current_setting('lock_timeout') AS prev, set_config('lock_timeout', $1, true),
                  set_config('statement_timeout', $2, true), set_config('idle_in_transaction_session_timeout', $2, true)`,
          [`${lockMs}ms`, `${attempt.transactionTimeoutMs}ms`],
        );
        let outcome: Awaited<ReturnType<TransactionalStore['claim']>>;
        try {
          outcome = await db.claim(ref, claim, exec);
        } catch (err) {
          if (sqlState(err) === LOCK_NOT_AVAILABLE) return { kind: 'in_progress' };
          throw err;
        }
        if (outcome.kind !== 'claimed') return outcome;
        await exec.query(`SELECT set_config('lock_timeout', $1, true)`, [rows[0]?.prev ?? '0']);
        const ran = await run(trx, client);
        if (!(await db.complete(ref, claim.token, ran.json, claim.ttlMs, exec))) {
          throw new Error(`idempotency key "${ref.keyId}" vanished inside its own transaction`);
        }
        return { kind: 'ran', ...ran };
      });
  } finally {
    client.off('error', ignore);
    // pg-pool discards a client whose connection died, so a plain release is right in every case.
    client.release();
  }
}

/** A Kysely whose only connection is `client`; Kysely's own transaction() then issues BEGIN/COMMIT on it. */
function onClient<DB>(client: pg.PoolClient): Kysely<DB> {
  const borrowed = {
    query: (text: string, params: readonly unknown[]) => client.query(text, params as unknown[]),
    release: () => {}, // the client goes back to the pool in attemptInTransaction, not here
  } as unknown as PostgresPoolClient;
  const pool: PostgresPool = { connect: async () => borrowed, end: async () => {} };
  return new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
}
