import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Config } from '../config/load-config.js';
import { CircuitOpenError, NotMigratedError, PgErrorCode, sqlState } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import { type DestinationPolicy, destinationPolicy } from './allowed-queues.js';
import { backoffDelay } from './backoff.js';
import { type BreakerPermit, type BreakerState, CircuitBreaker, type RelayHealth } from './circuit-breaker.js';
import { Doorbell, ProducerSweep } from './doorbell.js';
import { TestFault } from './fault-injection.js';
import { type PublishSummary, planMarks, ZERO_SUMMARY } from './mark-plan.js';
import { type ClaimRow, claimBatchSql, MARK_SQL, markPublishedSql, toClaimed } from './relay-sql.js';
import { OUTBOX_TABLE } from './rows.js';
import type { ClaimedEvent, Publisher, PublishOutcome } from './types.js';
import { Wakeup } from './wakeup.js';

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

export type { RelayHealth };

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

export type { PublishSummary };

/** A circuit-breaker permit and whether a publish used it. */
interface Gate {
  permit: BreakerPermit;
  used: boolean;
}

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
  readonly #breaker: CircuitBreaker;
  /** Test-only crash switch (EXACTLY_ONCE_TEST_FAULT); `undefined` in production. */
  readonly #fault: TestFault | undefined;
  /** The allow-list again: rows can be inserted by plain SQL, bypassing the writer's check. */
  readonly #destinations: DestinationPolicy;
  /** Earliest retry this process scheduled (`performance.now()` time); we wake for it instead of a whole poll interval. */
  #nextRetryAt = Number.POSITIVE_INFINITY;
  /** Marker cleanups still in flight; `stop()` and `publishDue()` wait for them. */
  readonly #forgetting = new Set<Promise<void>>();

  constructor(options: RelayOptions) {
    this.relayId = options.relayId ?? randomBytes(4).toString('hex');
    this.#config = options.config;
    this.#pool = options.pool;
    this.#publisher = options.publisher;
    this.#log = (options.logger ?? silentLogger).child({ component: 'relay', relayId: this.relayId });
    this.#metrics = options.metrics;
    this.#doorbell = new Doorbell({
      url: this.#config.database.url,
      logger: this.#log,
      wakeup: this.#wakeup,
      connectTimeoutMs: this.#config.database.connectTimeout,
    });
    const breaker = this.#config.outbox.circuitBreaker;
    this.#breaker = new CircuitBreaker({
      enabled: breaker.enabled,
      failureThreshold: breaker.failureThreshold,
      openForMs: breaker.openFor,
      logger: this.#log,
      onState: (state) => {
        this.#metrics?.breakerState?.(state);
        // The trial batch closed the circuit: loops waiting out the open period may claim now.
        if (state === 'closed') this.#wakeup.wake();
      },
    });
    this.#fault = TestFault.fromEnv(process.env, this.#log);
    this.#destinations = destinationPolicy(this.#config.outbox);
  }

  /**
   * Can this relay publish? Readiness probes (`/readyz`) serve it: not ready while the circuit breaker is open or
   * half-open, with the reason and the last publish error.
   */
  health(): RelayHealth {
    return this.#breaker.health();
  }

  /** Check the schema, start listening for NOTIFY and run `outbox.concurrency` claim loops. */
  async start(): Promise<void> {
    await this.assertMigrated();
    this.#stopping = false;
    await this.#doorbell.start();
    const n = this.#config.outbox.concurrency;
    this.#metrics?.breakerState?.(this.#breaker.state);
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
    await this.#forgotten();
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
    const total = { ...ZERO_SUMMARY };
    for (;;) {
      const batch = await this.runBatch();
      for (const k of Object.keys(total) as (keyof PublishSummary)[]) total[k] += batch[k];
      if (batch.claimed === 0 || batch.claimed === batch.held) {
        await this.#forgotten();
        return total;
      }
    }
  }

  /**
   * One claim -> publish -> mark transaction. Throws on Postgres or Redis unavailability (nothing is marked), and
   * `CircuitOpenError` without claiming while the circuit breaker is open.
   */
  async runBatch(): Promise<PublishSummary> {
    const permit = this.#breaker.enter();
    if (!permit) throw new CircuitOpenError(this.#breaker.waitMs(), this.#breaker.lastError);
    const gate: Gate = { permit, used: false };
    try {
      return await this.#claimAndPublish(gate);
    } finally {
      // Nothing claimed, or Postgres failed before the publish: the permit (maybe the half-open trial) is unused.
      if (!gate.used) this.#breaker.leave(permit);
    }
  }

  /**
   * Events whose destination the allow-list refuses are never sent: each fails at once, without retries (no retry can
   * change the verdict), and the rest of the batch goes out as usual.
   */
  async #publishAllowed(events: ClaimedEvent[], gate: Gate, deadline: number): Promise<PublishOutcome[]> {
    const refusals = events.map((e) => (e.queue === null ? undefined : this.#destinations.reason(e.queue)));
    if (refusals.every((r) => r === undefined)) return this.#publish(events, gate, deadline);
    const allowed = events.filter((_, i) => refusals[i] === undefined);
    const sent = allowed.length > 0 ? await this.#publish(allowed, gate, deadline) : [];
    let next = 0;
    return refusals.map((reason) =>
      reason === undefined
        ? (sent[next++] ?? { kind: 'failed', error: 'publisher returned no outcome' })
        : { kind: 'failed', error: `destination refused: ${reason}`, permanent: true },
    );
  }

  /** Publish through the circuit breaker: a throw is an infrastructure failure, a return a success. */
  async #publish(events: ClaimedEvent[], gate: Gate, deadline: number): Promise<PublishOutcome[]> {
    gate.used = true;
    try {
      const outcomes = await this.#publisher.publish(events, { deadline });
      this.#breaker.success(gate.permit);
      return outcomes;
    } catch (err) {
      this.#breaker.failure(gate.permit, err);
      throw err;
    }
  }

  async #claimAndPublish(gate: Gate): Promise<PublishSummary> {
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
    // Postgres ends our claim claim_timeout after it went idle, which is after we sent the claim: from then on
    // another relay may publish these events, so no push of ours may land later (lua/publish-jobs.lua).
    const deadline = started + claimTimeout;
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
        return { ...ZERO_SUMMARY };
      }
      const outcomes = await this.#publishAllowed(events, gate, deadline);
      if (this.#fault) await this.#fault.afterPush();
      const summary = await this.#markAndCommit(client, events, outcomes);
      this.#forget(events, outcomes);
      this.#record(summary, (performance.now() - started) / 1000);
      if (summary.duplicates > 0) {
        // Only a relay that pushed and then failed to commit (crash, timeout, lost connection) leaves these behind.
        this.#log.warn(
          { duplicates: summary.duplicates, claimed: summary.claimed },
          'events were already in Redis (an earlier attempt pushed them and did not commit); marked published, not pushed again',
        );
      }
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
    const { summary, seqs, statuses, delays, errors, soonestRetryMs } = planMarks(
      events,
      outcomes,
      this.#config.outbox,
      this.#log,
    );
    if (soonestRetryMs !== undefined) {
      // Monotonic clock: a wall-clock step (NTP on a VM) must not turn a 300 ms wait into a whole poll interval.
      const now = performance.now();
      const at = now + soonestRetryMs;
      // A remembered retry time already in the past has been served; the new one replaces it.
      this.#nextRetryAt = this.#nextRetryAt > now ? Math.min(this.#nextRetryAt, at) : at;
    }
    if (seqs.length > 0 && summary.retried + summary.failed === 0) {
      await client.query(markPublishedSql(seqs));
      return summary;
    }
    if (seqs.length > 0) await client.query(MARK_SQL, [seqs, statuses, delays, errors]);
    await client.query('COMMIT');
    return summary;
  }

  /**
   * The batch is committed: delete the markers of what it published (G2 needs a marker only while a push's COMMIT is
   * unknown; a published row is never claimed again). Not awaited, so the next claim overlaps it; on the same Redis
   * connection it still reaches the server before our next push. Best effort: a failure leaves the markers to expire
   * after dedup_window, logged and counted.
   */
  #forget(events: readonly ClaimedEvent[], outcomes: readonly PublishOutcome[]): void {
    if (!this.#publisher.forget) return;
    const done = events.filter((_, i) => {
      const kind = outcomes[i]?.kind;
      return kind === 'published' || kind === 'duplicate';
    });
    if (done.length === 0) return;
    const work: Promise<void> = this.#publisher.forget(done).then(
      () => {
        this.#forgetting.delete(work);
      },
      (err: unknown) => {
        this.#forgetting.delete(work);
        this.#log.debug(
          { err, markers: done.length },
          'could not delete dedup markers; they expire after dedup_window',
        );
        this.#metrics?.outboxMarkersLeft?.(done.length);
      },
    );
    this.#forgetting.add(work);
  }

  async #forgotten(): Promise<void> {
    while (this.#forgetting.size > 0) await Promise.allSettled([...this.#forgetting]);
  }

  #record(summary: PublishSummary, seconds: number): void {
    const m = this.#metrics;
    if (!m) return;
    m.outboxBatch(summary.claimed, seconds);
    if (summary.published + summary.duplicates > 0) m.outboxPublished(summary.published + summary.duplicates);
    if (summary.failed > 0) m.outboxFailed(summary.failed);
    if (summary.retried > 0) m.outboxRetried?.(summary.retried);
    if (summary.duplicates > 0) m.outboxDuplicates?.(summary.duplicates);
  }

  async #loop(index: number): Promise<void> {
    const log = this.#log.child({ loop: index });
    let outages = 0;
    // Producers may have skipped the bell because this process was the watchman: after letting go of the watch lock
    // we owe them a sweep (doorbell.ts). The debt survives new work, errors and an open circuit until a sweep has
    // begun; a begun sweep survives new work until every transaction in it has ended.
    let owed = false;
    let sweep: ProducerSweep | undefined;
    while (!this.#stopping) {
      try {
        const openFor = this.#breaker.waitMs();
        if (openFor > 0) {
          // Circuit open: claim nothing (it would only be rolled back). Producers ring the bell again meanwhile.
          if (await this.#doorbell.rest(index)) owed = true;
          await this.#wakeup.sleep(openFor);
          continue;
        }
        const batch = await this.runBatch();
        if (outages > 0) log.info({ afterFailures: outages }, 'relay recovered');
        outages = 0;
        if (batch.claimed > 0 && batch.claimed > batch.held) {
          // More is probably waiting. While we drain, producers skip the NOTIFY (see doorbell.ts).
          this.#doorbell.setAwake(index);
          continue;
        }
        // Caught up: release the watch lock, then claim until every producer transaction in flight at that moment
        // has ended. A fresh pg_locks read also covers everyone an earlier sweep still waited for.
        if ((await this.#doorbell.rest(index)) || owed) {
          sweep = await ProducerSweep.begin(this.#pool);
          owed = false;
          continue;
        }
        if (sweep && !sweep.done) {
          await this.#untilAProducerEnds(sweep);
          continue;
        }
        sweep = undefined;
        log.debug('caught up: sleeping until NOTIFY or poll_interval');
        await this.#wakeup.sleep(this.#idleDelay());
      } catch (err) {
        if (await this.#doorbell.rest(index)) owed = true;
        if (err instanceof CircuitOpenError) continue;
        outages++;
        const delay = backoffDelay(outages, OUTAGE_BACKOFF);
        const level = outages === 1 || outages % 20 === 0 ? 'warn' : 'debug';
        log[level]({ err, failures: outages, retryInMs: delay }, 'relay batch failed; backing off');
        if (err instanceof NotMigratedError) log.error('outbox table missing: run `exactly-once migrate`');
        await this.#wakeup.sleep(delay);
      }
    }
    await this.#doorbell.rest(index);
  }

  /** Wait until a producer transaction of the sweep has ended (then claim), or a NOTIFY, or stop. */
  async #untilAProducerEnds(sweep: ProducerSweep): Promise<void> {
    while (!this.#stopping) {
      if (await this.#wakeup.sleep(sweep.nextDelay())) return;
      if (await sweep.refresh(this.#pool)) return;
    }
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
