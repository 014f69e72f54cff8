import pg from 'pg';
import type { SqlExecutor } from '../../db/executor.js';
import type { Logger } from '../../logger.js';
import { withTimeout } from '../../timeout.js';
import { backoffDelay } from '../backoff.js';
import type { Wakeup } from '../wakeup.js';
import { OUTBOX_CHANNEL } from './tables.js';

const RECONNECT_BACKOFF = { initialDelay: 100, maxDelay: 5000, multiplier: 2, jitter: true };
/** Session lock a draining relay (the "watchman") holds exclusively; the trigger probes it shared (migrations/0005). */
export const WATCH_LOCK = "hashtext('exactly_once_outbox_watch'), 0";
/** Transaction lock every inserting producer holds shared until it ends; nobody takes it exclusively. */
export const PRODUCER_LOCK_NAME = 'exactly_once_outbox_producer';
/** How often a relay that is not the watchman, but drains, tries again to become it. */
const WATCH_RETRY_MS = 50;
/** A lock change that does not answer within this is treated as a lost connection. */
const LOCK_CHANGE_TIMEOUT_MS = 2000;
/** Shown in pg_stat_activity, so operators (and tests) can tell this connection from the claim connections. */
export const DOORBELL_APPLICATION_NAME = 'exactly-once relay doorbell';

/**
 * How relays learn that there is work, without making producers pay for it under load, and without holes.
 *
 * A producer's COMMIT that sent a NOTIFY holds a database-wide lock until its commit record is flushed, so if every
 * producer notified, producers would commit one at a time (measured at 1,000 events/s: producer commit p99 43 ms with
 * NOTIFY against 13 ms without). So the doorbell rings only when no relay is watching (migrations/0005):
 *
 * - While any claim loop of this process drains, this connection tries to hold WATCH_LOCK *exclusively*; at most one
 *   relay in the cluster gets it, the watchman. Others retry every WATCH_RETRY_MS while they drain.
 * - The insert trigger first takes PRODUCER_LOCK shared for its transaction, then probes WATCH_LOCK with a *shared*
 *   try-lock (released at once). Only a watchman makes the probe fail; then the producer skips the NOTIFY.
 * - The watchman, once it runs out of work, (1) releases WATCH_LOCK and waits until the release is done, (2) reads
 *   which transactions hold PRODUCER_LOCK (pg_locks), (3) claims once more, and then claims again each time one of
 *   those transactions has ended, until all have; only then does it sleep until NOTIFY. (`ProducerSweep`.)
 *
 * Why no commit falls through: a producer P that skipped the NOTIFY probed WATCH_LOCK while the watchman W held it,
 * and took PRODUCER_LOCK before that probe; W reads pg_locks after its release, so after P's probe. Either P has ended
 * by then (if it committed, the claim in (3) sees its event: its snapshot is taken later), or P is in the set W waits
 * for. Postgres releases a transaction's locks only after its commit is visible, so "P's lock is gone" means "P's
 * event is claimable". A producer that probes after the release gets the lock and rings. Producers never conflict
 * with each other (shared with shared), so one producer can no longer make another skip the bell (0004's hole).
 *
 * Not covered: a watchman SIGKILLed mid-drain leaves the producers that skipped because of it to `poll_interval`
 * (its session lock dies with it, so later producers ring again). If this connection is lost while it held the
 * lock, the loop still sweeps, and the reconnect terminates the old backend so a half-open TCP session cannot keep
 * the lock (and silence the doorbell) until keepalive notices.
 *
 * The same connection LISTENs; on loss it reconnects with backoff (polling covers the gap) and wakes the loops.
 */
export class Doorbell {
  readonly #url: string;
  readonly #log: Logger;
  readonly #wakeup: Wakeup;
  readonly #connectTimeoutMs: number;
  readonly #awakeLoops = new Set<number>();
  #client: pg.Client | undefined;
  #ready = false;
  #held = false;
  /** The lock was held during the current awake period (or we could not confirm its release): sweep when resting. */
  #watched = false;
  /** Backend pid of a lost connection that may still hold the lock server-side. */
  #orphanPid: number | undefined;
  #lastTry = Number.NEGATIVE_INFINITY;
  #syncing: Promise<void> = Promise.resolve();
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: { url: string; logger: Logger; wakeup: Wakeup; connectTimeoutMs?: number }) {
    this.#url = options.url;
    this.#log = options.logger;
    this.#wakeup = options.wakeup;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    await this.#connect(0);
  }

  /** Loop `loop` found work: try to become (or stay) the watchman. */
  setAwake(loop: number): void {
    this.#awakeLoops.add(loop);
    if (!this.#held && performance.now() - this.#lastTry >= WATCH_RETRY_MS) void this.#sync();
  }

  /**
   * Loop `loop` ran out of work (or cannot work). Resolves once the watch lock is released if this was the last awake
   * loop, with `true` when this process was the watchman meanwhile: the caller must then run a `ProducerSweep`.
   */
  async rest(loop: number): Promise<boolean> {
    if (!this.#awakeLoops.delete(loop) || this.#awakeLoops.size > 0) return false;
    await this.#sync();
    const watched = this.#watched;
    this.#watched = false;
    return watched;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#awakeLoops.clear();
    clearTimeout(this.#retry);
    const client = this.#client;
    this.#client = undefined;
    this.#ready = false;
    await this.#syncing.catch(() => {});
    // Ending the session releases the lock and the LISTEN.
    if (client) await client.end().catch(() => {});
  }

  /** Bring the lock in line with the loops' state, one statement at a time on the LISTEN connection. */
  #sync(): Promise<void> {
    this.#syncing = this.#syncing.then(() => this.#syncOnce());
    return this.#syncing;
  }

  async #syncOnce(): Promise<void> {
    const client = this.#client;
    if (!client || !this.#ready) return;
    const want = this.#awakeLoops.size > 0;
    if (want === this.#held) return;
    if (want) this.#lastTry = performance.now();
    try {
      const statement = want
        ? `SELECT pg_try_advisory_lock(${WATCH_LOCK}) AS ok`
        : `SELECT pg_advisory_unlock(${WATCH_LOCK}) AS ok`;
      const { rows } = await withTimeout(
        client.query<{ ok: boolean }>(statement),
        LOCK_CHANGE_TIMEOUT_MS,
        () => new Error(`no answer within ${LOCK_CHANGE_TIMEOUT_MS} ms`),
      );
      if (want && rows[0]?.ok) {
        this.#held = true;
        this.#watched = true;
      } else if (!want) {
        this.#held = false;
      }
    } catch (err) {
      // Lost or hung: drop the connection (its session and lock go with it; the reconnect makes sure of that).
      this.#log.warn({ err }, 'doorbell lock change failed; reconnecting');
      this.#lost(client, 0);
    }
  }

  #lost(client: pg.Client, attempt: number): void {
    if (this.#stopped || this.#client !== client) return;
    this.#client = undefined;
    this.#ready = false;
    if (this.#held) this.#orphanPid = (client as unknown as { processID?: number }).processID;
    this.#held = false;
    client.end().catch(() => {});
    this.#retry = setTimeout(() => void this.#connect(attempt + 1), backoffDelay(attempt + 1, RECONNECT_BACKOFF));
  }

  async #connect(attempt: number): Promise<void> {
    if (this.#stopped) return;
    const client = new pg.Client({
      connectionString: this.#url,
      application_name: DOORBELL_APPLICATION_NAME,
      keepAlive: true,
      connectionTimeoutMillis: this.#connectTimeoutMs,
    });
    client.on('error', (err) => {
      this.#log.warn({ err }, 'LISTEN connection lost; polling until it is back');
      this.#lost(client, attempt);
    });
    client.on('end', () => this.#lost(client, attempt));
    client.on('notification', () => this.#wakeup.wake());
    this.#client = client;
    try {
      await client.connect();
      if (this.#orphanPid !== undefined) {
        // Our previous session may live on server-side (half-open TCP) and keep the watch lock.
        // Matched on name and database too, so a recycled pid of someone else's backend is never touched.
        await client
          .query(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE pid = $1 AND application_name = $2 AND datname = current_database()`,
            [this.#orphanPid, DOORBELL_APPLICATION_NAME],
          )
          .catch(() => {});
        this.#orphanPid = undefined;
      }
      await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
      this.#ready = true;
      this.#held = false;
      void this.#sync();
      // Anything committed while we were not listening is picked up now.
      this.#wakeup.wake();
      if (attempt > 0) this.#log.info('LISTEN connection restored');
    } catch (err) {
      this.#log.warn({ err }, 'cannot LISTEN for outbox notifications; retrying');
      this.#lost(client, attempt);
    }
  }
}

/**
 * The transactions a resting watchman must wait for: those that held PRODUCER_LOCK when it let go. Each is identified
 * by its virtual transaction id, so a pooled producer connection that starts a new transaction counts as ended.
 */
export const PRODUCERS_IN_FLIGHT_SQL = `
  SELECT virtualtransaction AS vxid FROM pg_locks
  WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND objid = 0
    AND classid = hashtext('${PRODUCER_LOCK_NAME}')::oid
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`;

/**
 * A watchman's last duty after it let go of the watch lock (see `Doorbell`): claim each time one of the producer
 * transactions that were in flight has ended. Polls pg_locks (one scan of the lock table, well under a millisecond)
 * quickly at first; a transaction still open after 10 s (a batch job, a leaked connection) is polled every 100 ms,
 * so a forgotten transaction costs ten cheap queries a second, not a hundred.
 */
export class ProducerSweep {
  readonly #waiting: Set<string>;
  readonly #started = performance.now();
  #polls = 0;

  private constructor(waiting: Set<string>) {
    this.#waiting = waiting;
  }

  static async begin(db: SqlExecutor): Promise<ProducerSweep> {
    return new ProducerSweep(await inFlight(db));
  }

  get done(): boolean {
    return this.#waiting.size === 0;
  }

  /** How long to wait before the next look at pg_locks. */
  nextDelay(): number {
    if (performance.now() - this.#started > 10_000) return 100;
    return Math.min(10, 2 ** ++this.#polls);
  }

  /** Forget the transactions that have ended; `true` when at least one has (claim now). */
  async refresh(db: SqlExecutor): Promise<boolean> {
    const now = await inFlight(db);
    let ended = false;
    for (const vxid of this.#waiting) {
      if (!now.has(vxid)) {
        this.#waiting.delete(vxid);
        ended = true;
      }
    }
    return ended;
  }
}

async function inFlight(db: SqlExecutor): Promise<Set<string>> {
  const { rows } = await db.query<{ vxid: string }>(PRODUCERS_IN_FLIGHT_SQL);
  return new Set(rows.map((r) => r.vxid));
}
