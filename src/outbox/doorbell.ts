import pg from 'pg';
import type { Logger } from '../logger.js';
import { backoffDelay } from './backoff.js';
import { OUTBOX_AWAKE_LOCK, OUTBOX_CHANNEL } from './rows.js';
import type { Wakeup } from './wakeup.js';

const RECONNECT_BACKOFF = { initialDelay: 100, maxDelay: 5000, multiplier: 2, jitter: true };

/**
 * How relays learn that there is work, without making producers pay for it under load.
 *
 * A producer's COMMIT that sent a NOTIFY holds a database-wide lock until its commit record is flushed (Postgres
 * keeps the notification queue in commit order that way), so if every producer transaction notified, producers would
 * commit one at a time: measured at 1,000 events/s, producer commit p99 43 ms with NOTIFY against 13 ms without. So
 * the doorbell is rung only when no relay is awake to see the event anyway:
 *
 * - While any claim loop of this process is draining, this connection holds a *shared* session advisory lock
 *   (OUTBOX_AWAKE_LOCK). Every relay process does the same.
 * - The outbox's insert trigger (migrations/0004) tries that lock *exclusively*: it gets it
 *   only when no relay holds it, and only then sends the NOTIFY. A crashed relay's session lock goes with its
 *   connection, so a dead relay never silences the doorbell.
 * - A relay that runs out of work first releases the lock, then keeps polling briefly (the relay's grace polls), and
 *   only then sleeps. A producer that saw "awake" just before the release commits within those polls; anything later
 *   rings the bell. `poll_interval` remains the fallback for a commit slower than the grace period.
 *
 * The same connection LISTENs; on loss it reconnects with backoff (polling covers the gap) and takes the lock again
 * if loops are awake.
 */
export class Doorbell {
  readonly #url: string;
  readonly #log: Logger;
  readonly #wakeup: Wakeup;
  readonly #awakeLoops = new Set<number>();
  #client: pg.Client | undefined;
  #ready = false;
  #held = false;
  #syncing: Promise<void> = Promise.resolve();
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: { url: string; logger: Logger; wakeup: Wakeup }) {
    this.#url = options.url;
    this.#log = options.logger;
    this.#wakeup = options.wakeup;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    await this.#connect(0);
  }

  /** Loop `loop` is draining (`true`) or has run out of work (`false`). */
  setAwake(loop: number, awake: boolean): void {
    const before = this.#awakeLoops.size > 0;
    if (awake) this.#awakeLoops.add(loop);
    else this.#awakeLoops.delete(loop);
    if (before !== this.#awakeLoops.size > 0) this.#sync();
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
  #sync(): void {
    this.#syncing = this.#syncing.then(async () => {
      const client = this.#client;
      if (!client || !this.#ready) return;
      const want = this.#awakeLoops.size > 0;
      if (want === this.#held) return;
      try {
        await client.query(
          want
            ? `SELECT pg_advisory_lock_shared(${OUTBOX_AWAKE_LOCK})`
            : `SELECT pg_advisory_unlock_shared(${OUTBOX_AWAKE_LOCK})`,
        );
        this.#held = want;
      } catch (err) {
        // The connection is going away; its session (and the lock) with it. Reconnect handles the rest.
        this.#log.debug({ err }, 'doorbell lock change failed');
      }
      if (this.#awakeLoops.size > 0 !== this.#held) this.#sync();
    });
  }

  async #connect(attempt: number): Promise<void> {
    if (this.#stopped) return;
    const client = new pg.Client({ connectionString: this.#url });
    const lost = () => {
      if (this.#stopped || this.#client !== client) return;
      this.#client = undefined;
      this.#ready = false;
      this.#held = false;
      client.end().catch(() => {});
      this.#retry = setTimeout(() => void this.#connect(attempt + 1), backoffDelay(attempt + 1, RECONNECT_BACKOFF));
    };
    client.on('error', (err) => {
      this.#log.warn({ err }, 'LISTEN connection lost; polling until it is back');
      lost();
    });
    client.on('end', lost);
    client.on('notification', () => this.#wakeup.wake());
    this.#client = client;
    try {
      await client.connect();
      await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
      this.#ready = true;
      this.#held = false;
      this.#sync();
      // Anything committed while we were not listening is picked up now.
      this.#wakeup.wake();
      if (attempt > 0) this.#log.info('LISTEN connection restored');
    } catch (err) {
      this.#log.warn({ err }, 'cannot LISTEN for outbox notifications; retrying');
      lost();
    }
  }
}
