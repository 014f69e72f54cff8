import type pg from 'pg';
import type { Config } from '../config/load-config.js';
import { NotMigratedError, PgErrorCode, sqlState } from '../errors.js';
import type { Logger } from '../logger.js';
import { claimBatchSql } from './relay-sql.js';
import { type ClaimRow, OUTBOX_TABLE, toClaimed } from './rows.js';
import type { ClaimedEvent } from './types.js';

/**
 * An open claim transaction: its connection, the events it locked, and when it was sent. Whoever opens one must end
 * it (COMMIT through the mark statements, or `rollback()`) and then `release()` it.
 */
export class Claim {
  readonly client: pg.PoolClient;
  readonly events: ClaimedEvent[];
  /** `performance.now()` when the claim was sent. */
  readonly started: number;
  /**
   * Postgres ends the claim claim_timeout after it went idle, which is after we sent it: from then on another relay
   * may publish these events, so no push of ours may land later (lua/publish-jobs.lua).
   */
  readonly deadline: number;
  #broken: Error | undefined;
  readonly #onError: (err: Error) => void;

  private constructor(client: pg.PoolClient, started: number, claimTimeout: number, log: Logger) {
    this.client = client;
    this.events = [];
    this.started = started;
    this.deadline = started + claimTimeout;
    // Postgres may end the connection while we wait on Redis (claim_timeout, restart, pg_terminate_backend). A
    // checked-out pg client has no error listener of the pool's, and an unheard 'error' event kills the process.
    this.#onError = (err: Error) => {
      this.#broken = err;
      log.warn({ err }, 'Postgres connection lost during a batch; it will be rolled back');
    };
    client.on('error', this.#onError);
  }

  /** BEGIN, lock aggregates and claim their events in one round trip (relay-sql.ts). Throws with nothing held. */
  static async open(pool: pg.Pool, outbox: Config['outbox'], log: Logger): Promise<Claim> {
    const { batchSize, claimWindow, claimTimeout } = outbox;
    const client = await pool.connect();
    const claim = new Claim(client, performance.now(), claimTimeout, log);
    try {
      const results = (await client.query(
        claimBatchSql({
          window: Math.max(claimWindow, batchSize),
          batch: batchSize,
          claimTimeoutMs: Math.max(1, Math.round(claimTimeout)),
        }),
      )) as unknown as pg.QueryResult<ClaimRow>[];
      // The last result of the message is the claim.
      for (const row of results[results.length - 1]?.rows ?? []) claim.events.push(toClaimed(row));
      return claim;
    } catch (err) {
      await claim.rollback();
      claim.release();
      if (sqlState(err) === PgErrorCode.undefinedTable) throw new NotMigratedError(OUTBOX_TABLE, { cause: err });
      throw err;
    }
  }

  /** Give the claim up. If even ROLLBACK fails the connection is dead or confused: `release()` then destroys it. */
  async rollback(): Promise<void> {
    await this.client.query('ROLLBACK').catch((err: Error) => {
      this.#broken = err;
    });
  }

  release(): void {
    this.client.off('error', this.#onError);
    this.client.release(this.#broken);
  }
}

/**
 * Learns, before a batch goes to Redis, how many events it holds and, if it was claimed ahead of time, whether that
 * claim was used or came back empty (`wasted`: the batch was claimed again).
 */
export type OnClaimed = (claimed: number, ahead: 'used' | 'wasted' | undefined) => void;

/**
 * Full batches a relay loop claims one at a time after a claim it opened ahead of time found nothing; doubled after
 * each such claim in a row, up to the maximum (one hot aggregate: the overlap only wastes a lock scan per batch).
 */
export const OVERLAP_PAUSE = 4;
export const MAX_OVERLAP_PAUSE = 64;

/** End a claim opened ahead of time that will not be used (the loop stops, or its batch before it failed). */
export async function discardClaim(claim: Promise<Claim> | undefined): Promise<void> {
  if (!claim) return;
  const open = await claim.catch(() => undefined);
  if (!open) return;
  await open.rollback();
  open.release();
}
