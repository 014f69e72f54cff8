import { randomBytes } from 'node:crypto';
import type { Config } from '../config/load-config.js';
import { CircuitOpenError, NotMigratedError, PublishUnavailableError } from '../errors.js';
import type { Logger } from '../logger.js';
import { withTimeout } from '../timeout.js';
import { backoffDelay } from './backoff.js';
import { type BreakerPermit, type BreakerState, CircuitBreaker, type RelayHealth } from './circuit-breaker.js';
import { addSummary, type PublishSummary, ZERO_SUMMARY } from './summary.js';
import { Wakeup } from './wakeup.js';

/** What a relay reports; the Prometheus metrics implement it. */
export interface RelayMetrics {
  outboxPublished(count: number): void;
  outboxFailed(count: number): void;
  outboxRetried?(count: number): void;
  /** Events an earlier attempt of their batch had written already (found in the marks); counted in published too. */
  outboxDuplicates?(count: number): void;
  /** The publish circuit breaker changed state. */
  breakerState?(state: BreakerState): void;
  outboxBatch(size: number, seconds: number): void;
  redisRoundTrip(seconds: number): void;
}

/**
 * A relay of either outbox storage, as the Manager, the CLI and the admin API see it. `PostgresOutboxRelay` and
 * `RedisOutboxRelay` are this interface over one `RelayCore`.
 */
export interface OutboxRelay {
  readonly relayId: string;
  /** Which storage it relays (`outbox.storage_type`). */
  readonly storage: 'postgres' | 'redis';
  /** Run `outbox.concurrency` claim loops until `stop()`. */
  start(): Promise<void>;
  /** Finish the batches in flight, then stop; safe to call twice. */
  stop(): Promise<void>;
  /** Publish everything due right now and say what happened (the library's `publishOutboxEvents`). */
  publishDue(): Promise<PublishSummary>;
  /** One batch; throws on an outage, and `CircuitOpenError` while the breaker is open. */
  runBatch(): Promise<PublishSummary>;
  /** Can this relay publish? `/readyz` serves it. */
  health(): RelayHealth;
  /** Wake sleeping loops now (e.g. after an admin replay). */
  wake(): void;
  [Symbol.asyncDispose](): Promise<void>;
}

/** What one batch did, and whether the loop should claim again at once. */
export interface BatchResult {
  summary: PublishSummary;
  /** More is probably waiting (a full batch, a lane's next interval just named, events parked or released). */
  more: boolean;
  /** Smallest retry delay this batch scheduled, in ms. */
  soonestRetryMs?: number | undefined;
}

/**
 * The breaker's and the timeout's hold on one batch's write to its destination. A storage calls `publish` once per
 * batch around the write; a throw is an outage (the breaker counts it), a return a success.
 */
export interface PublishGate {
  publish<T>(work: () => Promise<T>): Promise<T>;
  /** The breaker is closed (not open, not on trial): a storage may open its next claim ahead of time. */
  readonly breakerClosed: boolean;
}

/**
 * How loops tell producers whether anyone is awake, and what a loop owes when it goes to sleep. The Postgres storage's
 * doorbell (postgres/doorbell.ts) needs all of it; a storage whose producers always ring gives `ALWAYS_RINGING`.
 */
export interface LoopDoorbell {
  /** Loop `loop` found work. */
  awake(loop: number): void;
  /** Loop `loop` ran out of work or cannot work; `true` when producers may have skipped the bell meanwhile. */
  rest(loop: number): Promise<boolean>;
  /** Begin what a resting loop owes: wait for the producers that were in flight, claiming as each ends. */
  sweep(): Promise<ProducerWait>;
}

export interface ProducerWait {
  readonly done: boolean;
  nextDelay(): number;
  /** `true` when a producer it waited for has ended (claim now). */
  refresh(): Promise<boolean>;
}

/** Producers that always ring (the Redis outbox's store script): resting owes nothing. */
export const ALWAYS_RINGING: LoopDoorbell = {
  awake: () => {},
  rest: async () => false,
  sweep: async () => ({ done: true, nextDelay: () => 0, refresh: async () => false }),
};

/** What a storage plugs into the core: how it starts, stops and runs one batch. */
export interface RelayStorage {
  readonly name: 'postgres' | 'redis';
  readonly doorbell: LoopDoorbell;
  start(): Promise<void>;
  /** After the loops ended. */
  stop(): Promise<void>;
  /**
   * Claim, write through `gate`, record the outcomes. `loop` is the claim loop's index (a storage may keep per-loop
   * state, such as a claim opened ahead), `undefined` for a one-off batch. Throws on an outage with nothing recorded.
   */
  batch(gate: PublishGate, loop: number | undefined): Promise<BatchResult>;
  /** Drop per-loop state after an error, an open circuit or at stop. */
  release(loop: number): Promise<void>;
}

export interface RelayCoreOptions {
  config: Config;
  storage: RelayStorage;
  log: Logger;
  metrics?: RelayMetrics | undefined;
  relayId?: string | undefined;
  /** Shared with the storage's wake-up sources (LISTEN, a doorbell subscription). @defaultValue a new one */
  wakeup?: Wakeup | undefined;
}

/**
 * An outage that stopped a batch part-way, after some of its events were written and recorded (the Redis outbox's
 * move script refused mid-way): counted as an outage, and its summary still reaches the metrics.
 */
export class PartialBatchError extends PublishUnavailableError {
  readonly summary: PublishSummary;

  constructor(message: string, summary: PublishSummary) {
    super(message);
    this.summary = summary;
  }
}

/** Backoff after an infrastructure error (Postgres or Redis unreachable): quick first retry, then calmer. */
const OUTAGE_BACKOFF = { initialDelay: 100, maxDelay: 5000, multiplier: 2, jitter: true };

/**
 * The relay loop both storages share: circuit breaker, outage backoff, the retry clock, wake-ups and the drain.
 *
 * Each claim loop is always in one of these states:
 * - DRAINING: a batch found work (or named a lane's next interval); claim again at once, telling the doorbell the
 *   loop is awake.
 * - SWEEPING: it ran dry after producers may have skipped the bell because it was awake; claim each time one of the
 *   producer transactions in flight at that moment ends (`LoopDoorbell.sweep`), until all have.
 * - IDLE: sleep until a wake-up (NOTIFY, doorbell, `wake()`), the earliest retry this process scheduled, or
 *   `poll_interval`.
 * - OPEN: the breaker is open; claim nothing until it lets a trial through.
 * - BACKING OFF: the last batch hit an outage; sleep 100 ms doubling to 5 s, then claim again.
 * `stop()` ends every state at its next step; a batch in flight is finished (committed or rolled back) first.
 */
export class RelayCore {
  readonly relayId: string;
  readonly #config: Config;
  readonly #storage: RelayStorage;
  readonly #log: Logger;
  readonly #metrics: RelayMetrics | undefined;
  readonly #breaker: CircuitBreaker;
  readonly #wakeup: Wakeup;
  #loops: Promise<void>[] = [];
  #stopping = false;
  #running = false;
  /** Earliest retry this process scheduled (`performance.now()` time); an idle loop wakes for it. */
  #nextRetryAt = Number.POSITIVE_INFINITY;

  constructor(options: RelayCoreOptions) {
    this.relayId = options.relayId ?? randomBytes(4).toString('hex');
    this.#config = options.config;
    this.#storage = options.storage;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#wakeup = options.wakeup ?? new Wakeup();
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
  }

  health(): RelayHealth {
    return this.#breaker.health();
  }

  wake(): void {
    this.#wakeup.wake();
  }

  async start(): Promise<void> {
    this.#stopping = false;
    await this.#storage.start();
    this.#running = true;
    const n = this.#config.outbox.concurrency;
    this.#metrics?.breakerState?.(this.#breaker.state);
    this.#loops = Array.from({ length: n }, (_, i) => this.#loop(i));
    this.#log.info(
      { concurrency: n, batchSize: this.#config.outbox.batchSize, storage: this.#storage.name },
      'relay started',
    );
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wakeup.wake();
    await Promise.allSettled(this.#loops);
    this.#loops = [];
    // Also after one-off batches (publishDue) without start(): the storage may hold counts to write.
    await this.#storage.stop();
    if (!this.#running) return;
    this.#running = false;
    this.#log.info('relay stopped');
  }

  async publishDue(): Promise<PublishSummary> {
    const total = { ...ZERO_SUMMARY };
    for (;;) {
      const batch = await this.#batch(undefined);
      addSummary(total, batch.summary);
      if (!batch.more) return total;
    }
  }

  async runBatch(): Promise<PublishSummary> {
    // A batch that only named a lane's next interval claimed nothing yet: run the one that reads it, so a caller
    // looping until `claimed === 0` stops only when nothing is due.
    for (;;) {
      const batch = await this.#batch(undefined);
      if (batch.summary.claimed > 0 || !batch.more) return batch.summary;
    }
  }

  /** One batch under the breaker: `CircuitOpenError` without claiming while it is open. */
  async #batch(loop: number | undefined): Promise<BatchResult> {
    const permit = this.#breaker.enter();
    if (!permit) {
      if (loop !== undefined) await this.#storage.release(loop);
      throw new CircuitOpenError(this.#breaker.waitMs(), this.#breaker.lastError);
    }
    const gate = new Gate(this.#breaker, permit, this.#config.outbox.publishTimeout);
    const started = performance.now();
    try {
      const result = await this.#storage.batch(gate, loop);
      this.#noteRetry(result.soonestRetryMs);
      this.#record(result.summary, (performance.now() - started) / 1000);
      return result;
    } catch (err) {
      if (err instanceof PartialBatchError) this.#record(err.summary, (performance.now() - started) / 1000);
      throw err;
    } finally {
      // Nothing claimed, or the storage failed before writing: the permit (maybe the half-open trial) is unused.
      if (!gate.used) this.#breaker.leave(permit);
    }
  }

  #record(summary: PublishSummary, seconds: number): void {
    const m = this.#metrics;
    if (!m || summary.claimed === 0) return;
    m.outboxBatch(summary.claimed, seconds);
    if (summary.published + summary.duplicates > 0) m.outboxPublished(summary.published + summary.duplicates);
    if (summary.failed > 0) m.outboxFailed(summary.failed);
    if (summary.retried > 0) m.outboxRetried?.(summary.retried);
    if (summary.duplicates > 0) {
      m.outboxDuplicates?.(summary.duplicates);
      // Only a relay that wrote and then failed to commit (crash, timeout, lost connection) leaves these behind.
      this.#log.warn(
        { duplicates: summary.duplicates, claimed: summary.claimed },
        'events were already written by an earlier attempt of their batch (it did not commit); not written again',
      );
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
    const doorbell = this.#storage.doorbell;
    let outages = 0;
    // Producers may have skipped the bell because this loop was awake: after resting we owe them a sweep. The debt
    // survives new work, errors and an open circuit until a sweep has begun; a begun sweep survives new work until
    // every transaction in it has ended.
    let owed = false;
    let sweep: ProducerWait | undefined;
    while (!this.#stopping) {
      try {
        const openFor = this.#breaker.waitMs();
        if (openFor > 0) {
          // OPEN: claim nothing (it would only be rolled back). Producers ring the bell again meanwhile.
          await this.#storage.release(index);
          if (await doorbell.rest(index)) owed = true;
          await this.#wakeup.sleep(openFor);
          continue;
        }
        const batch = await this.#batch(index);
        if (outages > 0) log.info({ afterFailures: outages }, 'relay recovered');
        outages = 0;
        if (batch.more) {
          doorbell.awake(index);
          continue;
        }
        if ((await doorbell.rest(index)) || owed) {
          sweep = await doorbell.sweep();
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
        await this.#storage.release(index);
        if (await doorbell.rest(index).catch(() => false)) owed = true;
        if (err instanceof CircuitOpenError) continue;
        outages++;
        const delay = backoffDelay(outages, OUTAGE_BACKOFF);
        const level = outages === 1 || outages % 20 === 0 ? 'warn' : 'debug';
        log[level]({ err, failures: outages, retryInMs: delay }, 'relay batch failed; backing off');
        if (err instanceof NotMigratedError) log.error('outbox tables missing: run `exactly-once migrate`');
        await this.#wakeup.sleep(delay);
      }
    }
    await this.#storage.release(index);
    await doorbell.rest(index).catch(() => false);
  }

  /** Wait until a producer transaction of the sweep has ended (then claim), or a wake-up, or stop. */
  async #untilAProducerEnds(sweep: ProducerWait): Promise<void> {
    while (!this.#stopping) {
      if (await this.#wakeup.sleep(sweep.nextDelay())) return;
      if (await sweep.refresh()) return;
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

/**
 * One batch's permit. `publish` marks it used, bounds the write by `outbox.publish_timeout` (so a frozen Redis
 * cannot hang a batch past it, whatever the storage) and reports the outcome to the breaker.
 */
class Gate implements PublishGate {
  used = false;
  readonly #breaker: CircuitBreaker;
  readonly #permit: BreakerPermit;
  readonly #timeoutMs: number;

  constructor(breaker: CircuitBreaker, permit: BreakerPermit, timeoutMs: number) {
    this.#breaker = breaker;
    this.#permit = permit;
    this.#timeoutMs = timeoutMs;
  }

  get breakerClosed(): boolean {
    return this.#breaker.state === 'closed';
  }

  async publish<T>(work: () => Promise<T>): Promise<T> {
    this.used = true;
    try {
      const result = await withTimeout(
        work(),
        this.#timeoutMs,
        () => new PublishUnavailableError(`writing the batch took longer than ${this.#timeoutMs} ms`),
      );
      this.#breaker.success(this.#permit);
      return result;
    } catch (err) {
      this.#breaker.failure(this.#permit, err);
      throw err;
    }
  }
}
