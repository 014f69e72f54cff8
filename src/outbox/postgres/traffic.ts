import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { destinationOf } from '../destination.js';
import type { DestinationRule } from '../inspect.js';
import type { ClaimedEvent } from '../types.js';
import { TRAFFIC_TABLE } from './tables.js';

const MINUTE = 60_000;
/** Counts are written at most this often (and at stop), so the chart's current minute fills in as it goes. */
const FLUSH_EVERY_MS = 5000;

/**
 * Counts the events this relay process wrote, per minute and destination, into `exactly_once_outbox_traffic`, so the
 * dashboard's rate chart shows every relay's work (the write-once outbox keeps no per-event publish time). At most
 * one small upsert every 5 seconds while events flow; best effort: a failed write loses those counts, never an event.
 */
export class TrafficCounter {
  readonly #pool: pg.Pool;
  readonly #relayId: string;
  readonly #rule: DestinationRule;
  readonly #log: Logger;
  /** `${minute ms}\u0000${destination}` -> count not yet written */
  #pending = new Map<string, number>();
  #lastFlush = 0;
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(pool: pg.Pool, relayId: string, rule: DestinationRule, log: Logger) {
    this.#pool = pool;
    this.#relayId = relayId;
    this.#rule = rule;
    this.#log = log;
  }

  /** `events` were written (or found written) now. */
  count(events: readonly ClaimedEvent[]): void {
    if (events.length === 0) return;
    const now = Date.now();
    const minute = Math.floor(now / MINUTE) * MINUTE;
    for (const e of events) {
      const key = `${minute}\u0000${destinationOf(e, this.#rule)}`;
      this.#pending.set(key, (this.#pending.get(key) ?? 0) + 1);
    }
    if (now - this.#lastFlush >= FLUSH_EVERY_MS) this.#flush(now);
    else if (!this.#timer) {
      // Counts of a quiet spell are written too, not only when the next batch comes.
      this.#timer = setTimeout(() => this.#flush(Date.now()), this.#lastFlush + FLUSH_EVERY_MS - now);
      this.#timer.unref();
    }
  }

  /** Write whatever is counted and not written yet. */
  async drain(): Promise<void> {
    this.#flush(Date.now());
    await this.#flushing;
  }

  #flush(now: number): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#lastFlush = now;
    if (this.#pending.size === 0) return;
    const rows = [...this.#pending].map(([key, n]) => {
      const [minute, queue] = key.split('\u0000') as [string, string];
      return [Number(minute), queue, n] as const;
    });
    this.#pending = new Map();
    this.#flushing = this.#flushing.then(() =>
      this.#pool
        .query(
          `INSERT INTO ${TRAFFIC_TABLE} (minute, queue, relay_id, published)
           SELECT to_timestamp(m / 1000.0), q, $4, n FROM unnest($1::float8[], $2::text[], $3::int[]) AS u(m, q, n)
           ON CONFLICT (minute, queue, relay_id) DO UPDATE SET published = ${TRAFFIC_TABLE}.published + EXCLUDED.published`,
          [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2]), this.#relayId],
        )
        .then(
          () => {},
          (err: unknown) => this.#log.debug({ err }, 'could not record the traffic counts; the chart misses them'),
        ),
    );
  }
}
