import type pg from 'pg';
import type { Config } from '../../config/load-config.js';
import { NotMigratedError, PgErrorCode, sqlState } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { ClaimedEvent, LaneCursor } from '../types.js';
import { CLAIM_FUNCTION, EVENTS_TABLE } from './tables.js';

/** A row of `exactly_once_outbox_claim()` (migrations/0009) as pg returns it. */
interface ClaimRow {
  lane: number;
  kind: 's' | 'c' | 'p' | 'L' | 'R';
  batch: string;
  interval_no: string;
  exhausted: boolean | null;
  cursor_pos: string | null;
  seq: string;
  id: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  tenant_id: string;
  queue: string | null;
  retry_count: number;
  max_retries: number | null;
  created_at: Date;
  payload: string;
  headers: string;
  priority: string | null;
  traceparent: string | null;
  filepath: string | null;
  filesize: string | null;
}

/** One claimed event and what the claim wants done with it. */
export interface ClaimItem {
  event: ClaimedEvent & { position: NonNullable<ClaimedEvent['position']> };
  /** `push`: write it; `park`: its aggregate waits behind a parked event that is not due, so park it unwritten. */
  action: 'push' | 'park';
}

/** A lane this claim read: what its commit must write back. */
export interface LaneRead {
  lane: number;
  /** The cursor as committed when claimed. */
  cursor: LaneCursor;
  /** The batch used the lane's interval up: its commit names the next one. */
  exhausted: boolean;
}

/**
 * An open claim transaction: its connection, the lanes it holds (row locks on `exactly_once_outbox_lanes`) and what
 * it read. Holding a lane is holding every aggregate that hashes to it, and a lane is read in write order between
 * two snapshots, so events of an aggregate leave in order however many relays run (G3). Whoever opens one must end
 * it (the commit in commit.ts, or `rollback()`) and then `release()` it.
 */
export class Claim {
  readonly client: pg.PoolClient;
  readonly items: ClaimItem[] = [];
  readonly lanes: LaneRead[] = [];
  /** Some lane's next interval was named (and is read once this claim commits). */
  refreshed = false;
  /** `performance.now()` when the claim was sent. */
  readonly started: number;
  /**
   * Postgres ends the claim claim_timeout after it went idle, which is after we sent it: from then on another relay
   * may take these lanes, so no write of ours may land later (the publish scripts' deadline).
   */
  readonly deadline: number;
  #broken: Error | undefined;
  readonly #onError: (err: Error) => void;

  private constructor(client: pg.PoolClient, started: number, claimTimeout: number, log: Logger) {
    this.client = client;
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

  /** Events the claim holds, pushed or not. */
  get size(): number {
    return this.items.length;
  }

  /** Each lane's committed cursor, for the publisher's marks. */
  cursors(): Map<number, LaneCursor> {
    return new Map(this.lanes.map((l) => [l.lane, l.cursor]));
  }

  /**
   * BEGIN, then the claim function (lanes from `firstLane` on, until `batch_size` events), in one round trip.
   * READ COMMITTED whatever the database's default: every statement of the claim needs a snapshot of its own.
   * Throws with nothing held.
   */
  static async open(pool: pg.Pool, outbox: Config['outbox'], log: Logger, firstLane: number): Promise<Claim> {
    const { batchSize, claimTimeout } = outbox;
    const client = await pool.connect();
    const claim = new Claim(client, performance.now(), claimTimeout, log);
    try {
      const results = (await client.query(
        [
          'BEGIN ISOLATION LEVEL READ COMMITTED',
          // A wedged relay's claim is ended, and its lanes released, claim_timeout after it went idle (G5).
          `SET LOCAL idle_in_transaction_session_timeout = ${positiveInt(Math.round(claimTimeout))}`,
          'SET LOCAL jit = off',
          `SELECT * FROM ${CLAIM_FUNCTION}(${positiveInt(batchSize)}, ${Math.max(0, Math.trunc(firstLane))})`,
        ].join(';\n'),
      )) as unknown as pg.QueryResult<ClaimRow>[];
      claim.#read(results[results.length - 1]?.rows ?? []);
      return claim;
    } catch (err) {
      await claim.rollback();
      claim.release();
      if (sqlState(err) === PgErrorCode.undefinedTable || sqlState(err) === PgErrorCode.undefinedFunction) {
        throw new NotMigratedError(EVENTS_TABLE, { cause: err });
      }
      throw err;
    }
  }

  #read(rows: readonly ClaimRow[]): void {
    // The function returns lane after lane. Merge the lanes into write order (each item keyed by the highest seq of
    // its lane so far, then a stable sort): each lane keeps its own order (parked events, then its interval), which is
    // what per-aggregate order needs, and a batch spanning lanes reaches each list close to write order.
    const keys = new Map<ClaimItem, bigint>();
    const laneMax = new Map<number, bigint>();
    for (const r of rows) {
      if (r.kind === 'R') {
        this.refreshed = true;
      } else if (r.kind === 'L') {
        this.lanes.push({
          lane: r.lane,
          cursor: { interval: r.interval_no, pos: r.cursor_pos },
          exhausted: r.exhausted === true,
        });
      } else {
        const item: ClaimItem = { event: toClaimed(r), action: r.kind === 'p' ? 'park' : 'push' };
        const seq = BigInt(r.seq);
        const key = (laneMax.get(r.lane) ?? seq) > seq ? (laneMax.get(r.lane) as bigint) : seq;
        laneMax.set(r.lane, key);
        keys.set(item, key);
        this.items.push(item);
      }
    }
    this.items.sort((a, b) => {
      const d = (keys.get(a) as bigint) - (keys.get(b) as bigint);
      return d < 0n ? -1 : d > 0n ? 1 : 0;
    });
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

function toClaimed(r: ClaimRow): ClaimItem['event'] {
  return {
    seq: r.seq,
    id: r.id,
    aggregateType: r.aggregate_type,
    aggregateId: r.aggregate_id,
    eventType: r.event_type,
    tenantId: r.tenant_id,
    queue: r.queue,
    retryCount: r.retry_count,
    maxRetries: r.max_retries,
    createdAt: r.created_at,
    payload: r.payload,
    headers: r.headers,
    priority: r.priority,
    traceparent: r.traceparent,
    filepath: r.filepath,
    filesize: r.filesize,
    position: {
      lane: r.lane,
      kind: r.kind === 's' ? 's' : 'c',
      epoch: r.kind === 's' ? r.batch : r.interval_no,
      seq: r.seq,
    },
  };
}

function positiveInt(n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`expected a positive integer, got ${n}`);
  return n;
}

/** End a claim opened ahead of time that will not be used (the loop stops, or its batch before it failed). */
export async function discardClaim(claim: Promise<Claim> | undefined): Promise<void> {
  if (!claim) return;
  const open = await claim.catch(() => undefined);
  if (!open) return;
  await open.rollback();
  open.release();
}
