import type { Logger } from '../logger.js';
import { type BackoffPolicy, backoffDelay } from './backoff.js';
import type { ClaimedEvent, PublishOutcome } from './types.js';

/** Counts of one batch or of a drain. `duplicates` were already in Redis (a crashed relay's work) and count as published. */
export interface PublishSummary {
  claimed: number;
  published: number;
  duplicates: number;
  retried: number;
  failed: number;
  held: number;
}

export const ZERO_SUMMARY: Readonly<PublishSummary> = Object.freeze({
  claimed: 0,
  published: 0,
  duplicates: 0,
  retried: 0,
  failed: 0,
  held: 0,
});

const MAX_ERROR_LENGTH = 2000;

/** What to write back for a published batch: MARK_SQL's parallel arrays, the counts, and the soonest retry. */
export interface MarkPlan {
  summary: PublishSummary;
  seqs: string[];
  statuses: string[];
  delays: (number | null)[];
  errors: (string | null)[];
  /** Smallest retry delay scheduled (ms), if any event is to be retried. */
  soonestRetryMs: number | undefined;
}

/**
 * Turn the publisher's outcomes into row updates: published and duplicate -> published; failed -> pending with a
 * backoff delay, or failed once `max_retries` is spent; held -> untouched (it stays pending, in order).
 */
export function planMarks(
  events: readonly ClaimedEvent[],
  outcomes: readonly PublishOutcome[],
  policy: { maxRetries: number; retryBackoff: BackoffPolicy },
  log: Logger,
): MarkPlan {
  const plan: MarkPlan = {
    summary: { ...ZERO_SUMMARY, claimed: events.length },
    seqs: [],
    statuses: [],
    delays: [],
    errors: [],
    soonestRetryMs: undefined,
  };
  const { summary } = plan;
  events.forEach((event, i) => {
    const outcome = outcomes[i] ?? { kind: 'failed', error: 'publisher returned no outcome' };
    if (outcome.kind === 'held') {
      summary.held++;
      return;
    }
    plan.seqs.push(event.seq);
    if (outcome.kind === 'published' || outcome.kind === 'duplicate') {
      summary[outcome.kind === 'published' ? 'published' : 'duplicates']++;
      plan.statuses.push('published');
      plan.delays.push(null);
      plan.errors.push(null);
      return;
    }
    const attempt = event.retryCount + 1;
    const error = outcome.error.slice(0, MAX_ERROR_LENGTH);
    plan.errors.push(error);
    if (outcome.permanent || attempt > (event.maxRetries ?? policy.maxRetries)) {
      summary.failed++;
      plan.statuses.push('failed');
      plan.delays.push(null);
      log.error({ eventId: event.id, attempts: attempt, error }, 'event failed permanently; marked failed');
    } else {
      summary.retried++;
      const delay = backoffDelay(attempt, policy.retryBackoff);
      plan.statuses.push('pending');
      plan.delays.push(delay);
      plan.soonestRetryMs = Math.min(plan.soonestRetryMs ?? delay, delay);
      log.warn({ eventId: event.id, attempt, delayMs: delay, error }, 'publish failed; retry scheduled');
    }
  });
  return plan;
}
