import type pg from 'pg';
import type { Logger } from '../../logger.js';
import { type BackoffPolicy, backoffDelay } from '../backoff.js';
import { type PublishSummary, ZERO_SUMMARY } from '../summary.js';
import type { PublishOutcome } from '../types.js';
import type { Claim, ClaimItem } from './claim.js';
import { ADVANCE_FUNCTION, EVENTS_TABLE, PARKED_TABLE } from './tables.js';

const MAX_ERROR_LENGTH = 2000;

/** A new parked row: an interval event that failed, was held back, or waits behind a parked event. */
interface NewParked {
  lane: number;
  seq: string;
  status: 'pending' | 'failed';
  retryCount: number;
  /** Retry delay in ms; null: no own schedule (a follower, or failed). */
  delayMs: number | null;
  error: string | null;
}

/** A parked row the batch took and failed again. */
interface ParkedUpdate {
  seq: string;
  status: 'pending' | 'failed';
  retryCount: number;
  delayMs: number | null;
  error: string;
}

/** What a batch's commit writes: the counts, the parked table's changes and each lane's new cursor. */
export interface CommitPlan {
  summary: PublishSummary;
  park: NewParked[];
  update: ParkedUpdate[];
  /** Seqs of parked events written now: their rows go. */
  release: string[];
  lanes: { lane: number; pos: string | null; exhausted: boolean }[];
  /** Smallest retry delay scheduled (ms), if any event is to be retried. */
  soonestRetryMs: number | undefined;
}

/**
 * Turn the outcomes of a claim's pushed items (`outcomes[i]` for the i-th item whose action is `push`) into the
 * commit: written interval events need nothing (the cursor moves past them); a failed one is parked as its
 * aggregate's head, to be retried with backoff, or as failed once `max_retries` is spent (or the failure is
 * permanent); held-back and `park` items are parked behind; a parked event written now is released, one that failed
 * again gets its next retry (or fails for good).
 */
export function planCommit(
  claim: Claim,
  outcomes: readonly PublishOutcome[],
  policy: { maxRetries: number; retryBackoff: BackoffPolicy },
  log: Logger,
): CommitPlan {
  const plan: CommitPlan = {
    summary: { ...ZERO_SUMMARY, claimed: claim.size },
    park: [],
    update: [],
    release: [],
    lanes: [],
    soonestRetryMs: undefined,
  };
  const lastSeq = new Map<number, string>();
  let pushed = 0;
  for (const item of claim.items) {
    const { event } = item;
    const { lane, kind } = event.position;
    if (kind === 'c') lastSeq.set(lane, event.seq);
    const outcome: PublishOutcome =
      item.action === 'park' ? { kind: 'held' } : (outcomes[pushed++] ?? { kind: 'failed', error: 'no outcome' });
    if (outcome.kind === 'published' || outcome.kind === 'duplicate') {
      plan.summary[outcome.kind === 'published' ? 'published' : 'duplicates']++;
      if (kind === 's') plan.release.push(event.seq);
      continue;
    }
    if (outcome.kind === 'held') {
      plan.summary.held++;
      if (kind === 'c')
        plan.park.push({ lane, seq: event.seq, status: 'pending', retryCount: 0, delayMs: null, error: null });
      continue;
    }
    const attempt = event.retryCount + 1;
    const error = outcome.error.slice(0, MAX_ERROR_LENGTH);
    const final = outcome.permanent === true || attempt > (event.maxRetries ?? policy.maxRetries);
    let delayMs: number | null = null;
    if (final) {
      plan.summary.failed++;
      log.error({ eventId: event.id, attempts: attempt, error }, 'event failed permanently; marked failed');
    } else {
      plan.summary.retried++;
      delayMs = backoffDelay(attempt, policy.retryBackoff);
      plan.soonestRetryMs = Math.min(plan.soonestRetryMs ?? delayMs, delayMs);
      log.warn({ eventId: event.id, attempt, delayMs, error }, 'publish failed; retry scheduled');
    }
    const status = final ? 'failed' : 'pending';
    if (kind === 'c') plan.park.push({ lane, seq: event.seq, status, retryCount: attempt, delayMs, error });
    else plan.update.push({ seq: event.seq, status, retryCount: attempt, delayMs, error });
  }
  plan.lanes = claim.lanes.map((l) => ({ lane: l.lane, pos: lastSeq.get(l.lane) ?? null, exhausted: l.exhausted }));
  return plan;
}

/**
 * Parks copies of interval events, in batch order (`ord` values taken in one statement, matched to the rows by
 * rank), copying the event from its table by `(lane, seq)`: the claim never ships metadata to Node.
 */
const PARK_SQL = `
  WITH o AS (SELECT nextval('exactly_once_outbox_parked_ord') AS ord FROM generate_series(1, cardinality($1::smallint[]))),
       r AS (SELECT ord, row_number() OVER (ORDER BY ord) AS n FROM o)
  INSERT INTO ${PARKED_TABLE}
    (ord, id, seq, lane, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue,
     max_retries, created_at, status, retry_count, next_attempt_at, last_error)
  SELECT r.ord, e.id, e.seq, e.lane, e.aggregate_type, e.aggregate_id, e.event_type, e.payload, e.headers,
         e.metadata, e.tenant_id, e.queue, e.max_retries, e.created_at, u.status, u.retry_count,
         CASE WHEN u.delay_ms IS NULL THEN '-infinity'::timestamptz
              ELSE now() + u.delay_ms * interval '1 millisecond' END,
         u.err
    FROM unnest($1::smallint[], $2::bigint[], $3::text[], $4::int[], $5::int[], $6::text[]) WITH ORDINALITY
         AS u(lane, seq, status, retry_count, delay_ms, err, n)
    JOIN r USING (n)
    JOIN ${EVENTS_TABLE} e ON e.lane = u.lane AND e.seq = u.seq`;

/** A parked event that failed again: its retry count, next attempt (database clock) and error, or failed. */
const UPDATE_SQL = `
  UPDATE ${PARKED_TABLE} p SET
    status = u.status,
    retry_count = u.retry_count,
    next_attempt_at = CASE WHEN u.delay_ms IS NULL THEN p.next_attempt_at
                           ELSE now() + u.delay_ms * interval '1 millisecond' END,
    last_error = u.err
  FROM unnest($1::bigint[], $2::text[], $3::int[], $4::int[], $5::text[]) AS u(seq, status, retry_count, delay_ms, err)
  WHERE p.seq = u.seq`;

const RELEASE_SQL = `DELETE FROM ${PARKED_TABLE} WHERE seq = ANY($1::bigint[])`;

/**
 * Write the plan and COMMIT. Runs only once the batch's push has answered, so a lane's cursor never moves past an
 * event that was not written or parked (G1). The common batch (everything written, nothing parked before or now) is
 * one round trip: the cursors' advance and COMMIT in one simple-protocol message (its arrays hold only integers and
 * booleans).
 */
export async function commitBatch(client: pg.PoolClient, plan: CommitPlan): Promise<void> {
  if (plan.park.length > 0) {
    const p = plan.park;
    await client.query(PARK_SQL, [
      p.map((r) => r.lane),
      p.map((r) => r.seq),
      p.map((r) => r.status),
      p.map((r) => r.retryCount),
      p.map((r) => r.delayMs),
      p.map((r) => r.error),
    ]);
  }
  if (plan.update.length > 0) {
    const u = plan.update;
    await client.query(UPDATE_SQL, [
      u.map((r) => r.seq),
      u.map((r) => r.status),
      u.map((r) => r.retryCount),
      u.map((r) => r.delayMs),
      u.map((r) => r.error),
    ]);
  }
  if (plan.release.length > 0) await client.query(RELEASE_SQL, [plan.release]);
  await client.query(advanceSql(plan.lanes));
}

/** The cursors' advance and COMMIT, as one message. */
export function advanceSql(lanes: CommitPlan['lanes']): string {
  if (lanes.length === 0) return 'COMMIT';
  const ints = (values: (string | number | null)[]) => {
    const text = values.map((v) => (v === null ? 'NULL' : String(v))).join(',');
    if (!/^[0-9,NUL-]*$/.test(text)) throw new RangeError('cursor values must be integers');
    return `'{${text}}'`;
  };
  return `SELECT ${ADVANCE_FUNCTION}(${ints(lanes.map((l) => l.lane))}::smallint[], ${ints(lanes.map((l) => l.pos))}::bigint[],
          '{${lanes.map((l) => (l.exhausted ? 't' : 'f')).join(',')}}'::boolean[]);
          COMMIT`;
}

export type { ClaimItem };
