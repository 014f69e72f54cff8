import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Config } from '../config/load-config.js';
import { NotMigratedError, PgErrorCode, sqlState } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import { backoffDelay } from './backoff.js';
import { Doorbell } from './doorbell.js';
import { claimBatchSql, MARK_SQL, markPublishedSql } from './relay-sql.js';
import { OUTBOX_TABLE } from './rows.js';
import type { ClaimedEvent, Publisher, PublishOutcome } from './types.js';
import { Wakeup } from './wakeup.js';

/** What the relay reports; the Prometheus metrics implement it. */
export interface RelayMetrics {
  outboxPublished(count: number): void;
  outboxFailed(count: number): void;
  outboxRetried?(count: number): void;
  outboxBatch(size: number, seconds: number): void;
  redisRoundTrip(seconds: number): void;
}

export interface RelayOptions {
  config: Config;
  /** Connections for claim transactions; one per concurrent batch is in use at a time. */
  pool: pg.Pool;
  publisher: Publisher;
  logger?: Logger;
  metrics?: RelayMetrics;
  /** Shown in logs. @defaultValue random */
  relayId?: string;
}

/** Counts of one batch or of a drain. `duplicates` were already in Redis (a crashed relay's work) and count as published. */
export interface PublishSummary {
  claimed: number;
  published: number;
  duplicates: number;
  retried: number;
  failed: number;
  held: number;
}

const ZERO: PublishSummary = { claimed: 0, published: 0, duplicates: 0, retried: 0, failed: 0, held: 0 };
const MAX_ERROR_LENGTH = 2000;
/**
 * Quick polls after a loop runs out of work, before it sleeps until NOTIFY: they catch commits of producers that saw
 * a relay awake (and so did not NOTIFY) just before this loop let go. Sum ~60 ms, more than a commit's flush takes.
 */
const GRACE_POLLS_MS = [2, 4, 8, 16, 32];
/** Backoff after an infrastructure error (Postgres or Redis unreachable): quick first retry, then calmer. */
const OUTAGE_BACKOFF = { initialDelay: 100, maxDelay: 5000, multiplier: 2, jitter: true };

/**
 * Moves committed outbox events into Redis. Run as many relays as you like, in one process (`concurrency`) or many:
 * they share the work through Postgres row and advisory locks, and keep each aggregate's events in write order.
 *
 * @example
 * const relay = new Relay({ config, pool, publisher: new RedisListPublisher(redis) });
 * await relay.start();            // LISTEN/NOTIFY wake-ups, poll_interval fallback
 * process.on('SIGTERM', () => relay.stop());
 */
export class Relay {
  readonly relayId: string;
  readonly #config: Config;
  readonly #pool: pg.Pool;
  readonly #publisher: Publisher;
  readonly #log: Logger;
  readonly #metrics: RelayMetrics | undefined;
  readonly #wakeup = new Wakeup();
  #loops: Promise<void>[] = [];
  #stopping = false;
  readonly #doorbell: Doorbell;
  /** Earliest retry this process scheduled (`performance.now()` time); we wake for it instead of a whole poll interval. */
  #nextRetryAt = Number.POSITIVE_INFINITY;

  constructor(options: RelayOptions) {
    this.relayId = options.relayId ?? randomBytes(4).toString('hex');
    this.#config = options.config;
    this.#pool = options.pool;
    this.#publisher = options.publisher;
    this.#log = (options.logger ?? silentLogger).child({ component: 'relay', relayId: this.relayId });
    this.#metrics = options.metrics;
    this.#doorbell = new Doorbell({ url: this.#config.database.url, logger: this.#log, wakeup: this.#wakeup });
  }

  /** Check the schema, start listening for NOTIFY and run `outbox.concurrency` claim loops. */
  async start(): Promise<void> {
    await this.assertMigrated();
    this.#stopping = false;
    await this.#doorbell.start();
    const n = this.#config.outbox.concurrency;
    this.#loops = Array.from({ length: n }, (_, i) => this.#loop(i));
    this.#log.info({ concurrency: n, batchSize: this.#config.outbox.batchSize }, 'relay started');
  }

  /** Throw `NotMigratedError` if the outbox table is missing. */
  async assertMigrated(): Promise<void> {
    const { rows } = await this.#pool.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [OUTBOX_TABLE]);
    if (!rows[0]?.t) throw new NotMigratedError(OUTBOX_TABLE);
  }

  /**
   * Finish the batches in flight, then stop. Resolves once no claim is held; safe to call twice.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wakeup.wake();
    await Promise.allSettled(this.#loops);
    this.#loops = [];
    await this.#doorbell.stop();
    this.#log.info('relay stopped');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Wake sleeping loops now (e.g. after an admin retry). */
  wake(): void {
    this.#wakeup.wake();
  }

  /**
   * Publish everything due right now and return what happened (the library's `publishOutboxEvents`).
   * Runs batches until one finds nothing to claim; errors propagate to the caller.
   */
  async publishDue(): Promise<PublishSummary> {
    const total = { ...ZERO };
    for (;;) {
      const batch = await this.runBatch();
      for (const k of Object.keys(total) as (keyof PublishSummary)[]) total[k] += batch[k];
      if (batch.claimed === 0 || batch.claimed === batch.held) return total;
    }
  }

  /** One claim -> publish -> mark transaction. Throws on Postgres or Redis unavailability (nothing is marked). */
  async runBatch(): Promise<PublishSummary> {
    const { batchSize, claimWindow, claimTimeout } = this.#config.outbox;
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    // Postgres may end the connection while we wait on Redis (claim_timeout, restart, pg_terminate_backend). A
    // checked-out pg client has no error listener of the pool's, and an unheard 'error' event kills the process.
    const onError = (err: Error) => {
      broken = err;
      this.#log.warn({ err }, 'Postgres connection lost during a batch; it will be rolled back');
    };
    client.on('error', onError);
    const started = performance.now();
    try {
      // BEGIN, lock aggregates and claim their events in one round trip (see relay-sql.ts); the last result is the claim.
      const results = (await client.query(
        claimBatchSql({
          window: Math.max(claimWindow, batchSize),
          batch: batchSize,
          claimTimeoutMs: Math.max(1, Math.round(claimTimeout)),
        }),
      )) as unknown as pg.QueryResult<ClaimRow>[];
      const events = (results[results.length - 1]?.rows ?? []).map(toClaimed);
      if (events.length === 0) {
        await client.query('COMMIT');
        return { ...ZERO };
      }
      const outcomes = await this.#publisher.publish(events);
      const summary = await this.#markAndCommit(client, events, outcomes);
      this.#record(summary, (performance.now() - started) / 1000);
      return summary;
    } catch (err) {
      // If even ROLLBACK fails the connection is dead or confused: destroy it rather than return it to the pool.
      await client.query('ROLLBACK').catch((rollbackErr: Error) => {
        broken = rollbackErr;
      });
      if (sqlState(err) === PgErrorCode.undefinedTable) throw new NotMigratedError(OUTBOX_TABLE, { cause: err });
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  /** Record each outcome and COMMIT: one round trip when every event went out, two when some must be retried. */
  async #markAndCommit(
    client: pg.PoolClient,
    events: ClaimedEvent[],
    outcomes: PublishOutcome[],
  ): Promise<PublishSummary> {
    const { maxRetries, retryBackoff } = this.#config.outbox;
    const summary: PublishSummary = { ...ZERO, claimed: events.length };
    const seqs: string[] = [];
    const statuses: string[] = [];
    const delays: (number | null)[] = [];
    const errors: (string | null)[] = [];
    events.forEach((event, i) => {
      const outcome = outcomes[i] ?? { kind: 'failed', error: 'publisher returned no outcome' };
      if (outcome.kind === 'held') {
        summary.held++;
        return;
      }
      seqs.push(event.seq);
      if (outcome.kind === 'published' || outcome.kind === 'duplicate') {
        summary[outcome.kind === 'published' ? 'published' : 'duplicates']++;
        statuses.push('published');
        delays.push(null);
        errors.push(null);
        return;
      }
      const attempt = event.retryCount + 1;
      const error = outcome.error.slice(0, MAX_ERROR_LENGTH);
      errors.push(error);
      if (attempt > (event.maxRetries ?? maxRetries)) {
        summary.failed++;
        statuses.push('failed');
        delays.push(null);
        this.#log.error({ eventId: event.id, attempts: attempt, error }, 'event failed permanently; marked failed');
      } else {
        summary.retried++;
        const delay = backoffDelay(attempt, retryBackoff);
        statuses.push('pending');
        delays.push(delay);
        // Monotonic clock: a wall-clock step (NTP on a VM) must not turn a 300 ms wait into a whole poll interval.
        const now = performance.now();
        const at = now + delay;
        // A remembered retry time already in the past has been served; the new one replaces it.
        this.#nextRetryAt = this.#nextRetryAt > now ? Math.min(this.#nextRetryAt, at) : at;
        this.#log.warn({ eventId: event.id, attempt, delayMs: delay, error }, 'publish failed; retry scheduled');
      }
    });
    if (seqs.length > 0 && summary.retried + summary.failed === 0) {
      await client.query(markPublishedSql(seqs));
      return summary;
    }
    if (seqs.length > 0) await client.query(MARK_SQL, [seqs, statuses, delays, errors]);
    await client.query('COMMIT');
    return summary;
  }

  #record(summary: PublishSummary, seconds: number): void {
    const m = this.#metrics;
    if (!m) return;
    m.outboxBatch(summary.claimed, seconds);
    if (summary.published + summary.duplicates > 0) m.outboxPublished(summary.published + summary.duplicates);
    if (summary.failed > 0) m.outboxFailed(summary.failed);
    if (summary.retried > 0) m.outboxRetried?.(summary.retried);
  }

  async #loop(index: number): Promise<void> {
    const log = this.#log.child({ loop: index });
    let outages = 0;
    let grace = 0;
    while (!this.#stopping) {
      try {
        const batch = await this.runBatch();
        if (outages > 0) log.info({ afterFailures: outages }, 'relay recovered');
        outages = 0;
        if (batch.claimed > 0 && batch.claimed > batch.held) {
          // More is probably waiting. While we drain, producers skip the NOTIFY (see doorbell.ts).
          this.#doorbell.setAwake(index, true);
          grace = 0;
          continue;
        }
        // Caught up: let producers ring again, poll a few more times for commits that saw us awake, then sleep.
        this.#doorbell.setAwake(index, false);
        if (grace < GRACE_POLLS_MS.length) {
          await this.#wakeup.sleep(Math.min(GRACE_POLLS_MS[grace++] as number, this.#idleDelay()));
          continue;
        }
        grace = 0;
        await this.#wakeup.sleep(this.#idleDelay());
      } catch (err) {
        this.#doorbell.setAwake(index, false);
        outages++;
        const delay = backoffDelay(outages, OUTAGE_BACKOFF);
        const level = outages === 1 || outages % 20 === 0 ? 'warn' : 'debug';
        log[level]({ err, failures: outages, retryInMs: delay }, 'relay batch failed; backing off');
        if (err instanceof NotMigratedError) log.error('outbox table missing: run `exactly-once migrate`');
        await this.#wakeup.sleep(delay);
      }
    }
    this.#doorbell.setAwake(index, false);
  }

  /** How long an idle loop may sleep: until the next poll, or just past the earliest retry this process scheduled. */
  #idleDelay(): number {
    const poll = this.#config.outbox.pollInterval;
    const untilRetry = this.#nextRetryAt - performance.now();
    if (untilRetry > 0) return Math.min(poll, untilRetry + 5);
    if (this.#nextRetryAt !== Number.POSITIVE_INFINITY) {
      // The retry fell due while we were busy: claim once more now instead of sleeping a whole poll interval.
      this.#nextRetryAt = Number.POSITIVE_INFINITY;
      return 0;
    }
    return poll;
  }
}

interface ClaimRow {
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

function toClaimed(r: ClaimRow): ClaimedEvent {
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
  };
}
