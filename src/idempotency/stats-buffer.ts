import type { Logger } from '../logger.js';
import type { IdempotencyStore, StatsDelta } from './types.js';

/** How long counter increments are gathered before one batched write to the store. */
export const STATS_FLUSH_INTERVAL_MS = 1000;

/**
 * Dedup counters are persisted in the store so every process adds to the same numbers, but not one write per call:
 * a per-call UPDATE of one hot row would serialise all workers of a queue. Increments are summed here and written
 * once per interval (and before every read of this process, and on close). A failed write keeps the increments for
 * the next attempt.
 */
export class StatsBuffer {
  private pending = new Map<string, { queueName: string; tenantId: string; requests: number; duplicates: number }>();
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: IdempotencyStore,
    private readonly logger: Logger,
    private readonly intervalMs = STATS_FLUSH_INTERVAL_MS,
  ) {}

  record(queueName: string, tenantId: string, duplicate: boolean): void {
    const k = JSON.stringify([queueName, tenantId]);
    const entry = this.pending.get(k) ?? { queueName, tenantId, requests: 0, duplicates: 0 };
    entry.requests++;
    if (duplicate) entry.duplicates++;
    this.pending.set(k, entry);
    if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush().catch(() => {}); // flush logs its own failures
      }, this.intervalMs);
      this.timer.unref();
    }
  }

  /** Write everything gathered so far; resolves after any flush already under way. */
  flush(): Promise<void> {
    this.chain = this.chain.then(() => this.write());
    return this.chain;
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  private async write(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    const deltas: StatsDelta[] = [...batch.values()];
    try {
      await this.store.addStats(deltas);
    } catch (err) {
      for (const [k, d] of batch) {
        const now = this.pending.get(k);
        if (now) {
          now.requests += d.requests;
          now.duplicates += d.duplicates;
        } else this.pending.set(k, d);
      }
      this.logger.warn({ err, queues: deltas.length }, 'could not persist idempotency stats; will retry');
    }
  }
}
