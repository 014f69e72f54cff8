import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Config } from '../config/load-config.js';
import { CircuitOpenError, NotMigratedError } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import { type DestinationPolicy, destinationPolicy } from './allowed-queues.js';
import { backoffDelay } from './backoff.js';
import { MarkerCleanup, markAndCommit, type RelayMetrics, recordBatch } from './batch-commit.js';
import { type BreakerPermit, CircuitBreaker, type RelayHealth } from './circuit-breaker.js';
import { Claim, discardClaim, MAX_OVERLAP_PAUSE, type OnClaimed, OVERLAP_PAUSE } from './claim.js';
import { Doorbell, ProducerSweep } from './doorbell.js';
import { TestFault } from './fault-injection.js';
import { type PublishSummary, ZERO_SUMMARY } from './mark-plan.js';
import { OUTBOX_TABLE } from './rows.js';
import type { ClaimedEvent, Publisher, PublishOutcome } from './types.js';
import { Wakeup } from './wakeup.js';

export type { RelayHealth, RelayMetrics };

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
  /** Deletes committed batches' dedup markers; `stop()` and `publishDue()` wait for it. */
  readonly #markers: MarkerCleanup;

  constructor(options: RelayOptions) {
    this.relayId = options.relayId ?? randomBytes(4).toString('hex');
    this.#config = options.config;
    this.#pool = options.pool;
    this.#publisher = options.publisher;
    this.#log = (options.logger ?? silentLogger).child({ component: 'relay', relayId: this.relayId });
    this.#metrics = options.metrics;
    this.#markers = new MarkerCleanup(this.#publisher, this.#log, this.#metrics);
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
    await this.#markers.drained();
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
        await this.#markers.drained();
        return total;
      }
    }
  }

  /**
   * One claim -> publish -> mark transaction. Throws on Postgres or Redis unavailability (nothing is marked), and
   * `CircuitOpenError` without claiming while the circuit breaker is open.
   */
  async runBatch(): Promise<PublishSummary> {
    return this.#runBatch(undefined, undefined);
  }

  /**
   * `next`: a claim opened ahead of time (the loop's overlap), used instead of claiming now. `onClaimed` learns how many
   * events this batch holds before it goes to Redis, and whether `next` was opened in vain (found nothing).
   */
  async #runBatch(next: Promise<Claim> | undefined, onClaimed: OnClaimed | undefined): Promise<PublishSummary> {
    const permit = this.#breaker.enter();
    if (!permit) {
      await discardClaim(next);
      throw new CircuitOpenError(this.#breaker.waitMs(), this.#breaker.lastError);
    }
    const gate: Gate = { permit, used: false };
    try {
      return await this.#claimAndPublish(gate, next, onClaimed);
    } finally {
      // Nothing claimed, or Postgres failed before the publish: the permit (maybe the half-open trial) is unused.
      if (!gate.used) this.#breaker.leave(permit);
    }
  }

  /**
   * Events whose destination the allow-list refuses are never sent: each fails at once, without retries (no retry can
   * change the verdict), and the rest of the batch goes out as usual.
   */
  async #publishAllowed(
    events: ClaimedEvent[],
    gate: Gate,
    deadline: number,
    client: pg.PoolClient,
  ): Promise<PublishOutcome[]> {
    const refusals = events.map((e) => (e.queue === null ? undefined : this.#destinations.reason(e.queue)));
    if (refusals.every((r) => r === undefined)) return this.#publish(events, gate, deadline, client);
    const allowed = events.filter((_, i) => refusals[i] === undefined);
    const sent = allowed.length > 0 ? await this.#publish(allowed, gate, deadline, client) : [];
    let next = 0;
    return refusals.map((reason) =>
      reason === undefined
        ? (sent[next++] ?? { kind: 'failed', error: 'publisher returned no outcome' })
        : { kind: 'failed', error: `destination refused: ${reason}`, permanent: true },
    );
  }

  /** Publish through the circuit breaker: a throw is an infrastructure failure, a return a success. */
  async #publish(
    events: ClaimedEvent[],
    gate: Gate,
    deadline: number,
    client: pg.PoolClient,
  ): Promise<PublishOutcome[]> {
    gate.used = true;
    try {
      // `client`: a transactional publisher (pg-boss) writes in this claim's transaction, committed with the marks.
      const outcomes = await this.#publisher.publish(events, { deadline, client });
      this.#breaker.success(gate.permit);
      return outcomes;
    } catch (err) {
      this.#breaker.failure(gate.permit, err);
      throw err;
    }
  }

  async #claimAndPublish(
    gate: Gate,
    next: Promise<Claim> | undefined,
    onClaimed: OnClaimed | undefined,
  ): Promise<PublishSummary> {
    const open = () => Claim.open(this.#pool, this.#config.outbox, this.#log);
    let claim = await (next ?? open());
    const ahead = next === undefined ? undefined : claim.events.length === 0 ? 'wasted' : 'used';
    if (ahead === 'wasted') {
      // Opened while the batch before held the aggregates it would have taken (one hot aggregate): claim again now.
      await discardClaim(next);
      claim = await open();
    }
    const { client, events, started } = claim;
    onClaimed?.(events.length, ahead);
    try {
      if (events.length === 0) {
        await client.query('COMMIT');
        return { ...ZERO_SUMMARY };
      }
      const outcomes = await this.#publishAllowed(events, gate, claim.deadline, client);
      if (this.#fault) await this.#fault.afterPush();
      const { summary, soonestRetryMs } = await markAndCommit(client, events, outcomes, this.#config.outbox, this.#log);
      this.#noteRetry(soonestRetryMs);
      this.#markers.forget(events, outcomes);
      recordBatch(this.#metrics, summary, (performance.now() - started) / 1000);
      if (summary.duplicates > 0) {
        // Only a relay that pushed and then failed to commit (crash, timeout, lost connection) leaves these behind.
        this.#log.warn(
          { duplicates: summary.duplicates, claimed: summary.claimed },
          'events were already in Redis (an earlier attempt pushed them and did not commit); marked published, not pushed again',
        );
      }
      return summary;
    } catch (err) {
      await claim.rollback();
      throw err;
    } finally {
      claim.release();
    }
  }

  /** Remember the soonest retry this process scheduled, so an idle loop wakes for it. */
  #noteRetry(soonestRetryMs: number | undefined): void {
    if (soonestRetryMs === undefined) return;
    // Monotonic clock: a wall-clock step (NTP on a VM) must not turn a 300 ms wait into a whole poll interval.
    const now = performance.now();
    const at = now + soonestRetryMs;
    // A remembered retry time already in the past has been served; the new one replaces it.
    this.#nextRetryAt = this.#nextRetryAt > now ? Math.min(this.#nextRetryAt, at) : at;
  }

  async #loop(index: number): Promise<void> {
    const log = this.#log.child({ loop: index });
    let outages = 0;
    // Producers may have skipped the bell because this process was the watchman: after letting go of the watch lock
    // we owe them a sweep (doorbell.ts). The debt survives new work, errors and an open circuit until a sweep has
    // begun; a begun sweep survives new work until every transaction in it has ended.
    let owed = false;
    let sweep: ProducerSweep | undefined;
    // Overlap: while a full batch is in Redis and being marked, the next claim runs on a second connection. It cannot
    // take that batch's aggregates (their advisory locks are held until its COMMIT, and the lock scan keeps an
    // aggregate only if its first row passed, relay-sql.ts), so it is what a second relay would claim: G3 holds as
    // with N relays. A claim opened in vain (one hot aggregate) pauses the overlap, twice as long each time in a row.
    let next: Promise<Claim> | undefined;
    let pause = 0;
    let pauseFor = OVERLAP_PAUSE;
    const onClaimed: OnClaimed = (claimed, ahead) => {
      if (ahead === 'used') pauseFor = OVERLAP_PAUSE;
      if (ahead === 'wasted') {
        pause = pauseFor;
        pauseFor = Math.min(pauseFor * 2, MAX_OVERLAP_PAUSE);
      }
      if (claimed < this.#config.outbox.batchSize || this.#stopping) return;
      if (pause > 0) pause--;
      else if (this.#canOpenAhead()) next = this.#openAhead();
    };
    while (!this.#stopping) {
      try {
        const openFor = this.#breaker.waitMs();
        if (openFor > 0) {
          // Circuit open: claim nothing (it would only be rolled back). Producers ring the bell again meanwhile.
          await discardClaim(next);
          next = undefined;
          if (await this.#doorbell.rest(index)) owed = true;
          await this.#wakeup.sleep(openFor);
          continue;
        }
        const ahead = next;
        next = undefined;
        const batch = await this.#runBatch(ahead, onClaimed);
        if (outages > 0) log.info({ afterFailures: outages }, 'relay recovered');
        outages = 0;
        if (next || (batch.claimed > 0 && batch.claimed > batch.held)) {
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
        await discardClaim(next);
        next = undefined;
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
    await discardClaim(next);
    await this.#doorbell.rest(index);
  }

  /**
   * Only while the circuit is closed (no claim while it is open or on trial), and only on a connection free now: one
   * waited for would be handed over after the batch before failed, i.e. a claim during an outage.
   */
  #canOpenAhead(): boolean {
    const pool = this.#pool;
    const free = pool.idleCount > 0 || pool.totalCount < (pool.options.max ?? 10);
    return this.#breaker.state === 'closed' && free && pool.waitingCount === 0;
  }

  /** A claim opened now for the loop's next batch; its failure surfaces when the loop awaits it. */
  #openAhead(): Promise<Claim> {
    const claim = Claim.open(this.#pool, this.#config.outbox, this.#log);
    claim.catch(() => {});
    return claim;
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
