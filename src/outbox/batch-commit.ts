import type pg from 'pg';
import type { Logger } from '../logger.js';
import type { BackoffPolicy } from './backoff.js';
import type { BreakerState } from './circuit-breaker.js';
import { type PublishSummary, planMarks } from './mark-plan.js';
import { MARK_SQL, markPublishedSql } from './relay-sql.js';
import type { ClaimedEvent, Publisher, PublishOutcome } from './types.js';

/** What the relay reports; the Prometheus metrics implement it. */
export interface RelayMetrics {
  outboxPublished(count: number): void;
  outboxFailed(count: number): void;
  outboxRetried?(count: number): void;
  /** Events found already in Redis (an earlier attempt pushed them and did not commit); counted in published too. */
  outboxDuplicates?(count: number): void;
  /** Dedup markers a failed cleanup left in Redis to expire by their TTL (`dedup_window`). */
  outboxMarkersLeft?(count: number): void;
  /** The publish circuit breaker changed state. */
  breakerState?(state: BreakerState): void;
  outboxBatch(size: number, seconds: number): void;
  redisRoundTrip(seconds: number): void;
}

/**
 * Record each outcome of a claimed batch and COMMIT: one round trip when every event went out, two when some must be
 * retried. Resolves with the counts and the smallest retry delay scheduled (ms), if any.
 */
export async function markAndCommit(
  client: pg.PoolClient,
  events: readonly ClaimedEvent[],
  outcomes: readonly PublishOutcome[],
  policy: { maxRetries: number; retryBackoff: BackoffPolicy },
  log: Logger,
): Promise<{ summary: PublishSummary; soonestRetryMs: number | undefined }> {
  const { summary, seqs, statuses, delays, errors, soonestRetryMs } = planMarks(events, outcomes, policy, log);
  if (seqs.length > 0 && summary.retried + summary.failed === 0) {
    await client.query(markPublishedSql(seqs));
    return { summary, soonestRetryMs };
  }
  if (seqs.length > 0) await client.query(MARK_SQL, [seqs, statuses, delays, errors]);
  await client.query('COMMIT');
  return { summary, soonestRetryMs };
}

/**
 * Deletes the dedup markers of committed batches (G2 needs a marker only while a push's COMMIT is unknown; a published
 * row is never claimed again), without making the relay wait for it.
 */
export class MarkerCleanup {
  readonly #publisher: Publisher;
  readonly #log: Logger;
  readonly #metrics: RelayMetrics | undefined;
  /** Cleanups still in flight; `drained()` waits for them. */
  readonly #inFlight = new Set<Promise<void>>();

  constructor(publisher: Publisher, log: Logger, metrics: RelayMetrics | undefined) {
    this.#publisher = publisher;
    this.#log = log;
    this.#metrics = metrics;
  }

  /**
   * The batch is committed: delete the markers of what it published. Not awaited, so the next claim overlaps it; on
   * the same Redis connection it still reaches the server before our next push. Best effort: a failure leaves the
   * markers to expire after dedup_window, logged and counted.
   */
  forget(events: readonly ClaimedEvent[], outcomes: readonly PublishOutcome[]): void {
    if (!this.#publisher.forget) return;
    const done = events.filter((_, i) => {
      const kind = outcomes[i]?.kind;
      return kind === 'published' || kind === 'duplicate';
    });
    if (done.length === 0) return;
    const work: Promise<void> = this.#publisher.forget(done).then(
      () => {
        this.#inFlight.delete(work);
      },
      (err: unknown) => {
        this.#inFlight.delete(work);
        this.#log.debug(
          { err, markers: done.length },
          'could not delete dedup markers; they expire after dedup_window',
        );
        this.#metrics?.outboxMarkersLeft?.(done.length);
      },
    );
    this.#inFlight.add(work);
  }

  /** Resolves once no cleanup is in flight. */
  async drained(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }
}

/** Count a finished batch in the relay's metrics. */
export function recordBatch(metrics: RelayMetrics | undefined, summary: PublishSummary, seconds: number): void {
  if (!metrics) return;
  metrics.outboxBatch(summary.claimed, seconds);
  if (summary.published + summary.duplicates > 0) metrics.outboxPublished(summary.published + summary.duplicates);
  if (summary.failed > 0) metrics.outboxFailed(summary.failed);
  if (summary.retried > 0) metrics.outboxRetried?.(summary.retried);
  if (summary.duplicates > 0) metrics.outboxDuplicates?.(summary.duplicates);
}
