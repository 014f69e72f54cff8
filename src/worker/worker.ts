import { hostname } from 'node:os';
import {
  IdempotencyInProgressError,
  IdempotencyKeyInvalidError,
  IdempotencyKeyMismatchError,
  IdempotencyLeaseLostError,
  IdempotencyStorageError,
  ServiceUnreachableError,
} from '../errors.js';
import type { ProcessResult } from '../idempotency/index.js';
import type { Logger } from '../logger.js';
import type { RedisClient } from '../redis.js';
import type { WorkerJob } from './job.js';
import type { WorkerKeys } from './keys.js';
import type { JobOutcome, WorkerMetrics } from './metrics.js';
import type { Reaper } from './reaper.js';
import type { Delivery, JobSource } from './source.js';

/**
 * The worker loop. It is always in one of these states:
 *
 * - `new`: constructed; nothing in Redis yet.
 * - `running`: the heartbeat is renewed every third of `heartbeat_ttl`; the fetch loop takes up to as many jobs as
 *   there are free slots (`concurrency`) and starts each; a failed job waits for its retry in the processing list.
 * - `draining` (`stop()`, SIGTERM in the CLI): no new job is taken (the pop in flight ends within `block_timeout`);
 *   running jobs finish (up to `shutdown_timeout`); jobs waiting for a retry go back to their queue now.
 * - `stopped`: the heartbeat and the return address are deleted and anything left in the processing list is
 *   returned (src/worker/reaper.ts), so a stopped worker holds nothing.
 *
 * Every job runs through `execute` (the idempotency service, keyed by the event id), so a job delivered twice (a
 * worker killed after the effect and before the acknowledgement, a reaper that took a slow worker for dead) has its
 * effect once.
 */
export interface WorkerRuntime {
  id: string;
  name: string;
  source: JobSource;
  redis: RedisClient;
  keys: WorkerKeys;
  concurrency: number;
  maxRetries: number;
  backoff: { baseMs: number; maxMs: number };
  heartbeatTtlMs: number;
  shutdownTimeoutMs: number;
  /** Runs the handler through the idempotency service. */
  execute(job: WorkerJob, attempt: number): Promise<ProcessResult<unknown>>;
  logger: Logger;
  metrics: WorkerMetrics;
  reaper?: Reaper;
  /** Resolves once the connections are ready (the first commands must not fail on a connection still opening). */
  ready(): Promise<void>;
  /** Close what the worker opened itself (connections, the idempotency service). */
  release(): Promise<void>;
}

export type WorkerState = 'new' | 'running' | 'draining' | 'stopped';

/** Counters of this process since start; the heartbeat carries them to the dashboard. */
export interface WorkerStats {
  processed: number;
  duplicates: number;
  retried: number;
  dead: number;
  inFlight: number;
  waitingRetry: number;
}

/** Errors that are not the job's fault: try again later without counting an attempt. */
const TRANSIENT = [
  IdempotencyInProgressError,
  IdempotencyStorageError,
  IdempotencyLeaseLostError,
  ServiceUnreachableError,
];
/** Errors no retry can fix: the job goes to the dead-letter list at once. */
const PERMANENT = [IdempotencyKeyInvalidError, IdempotencyKeyMismatchError];
const REDIS_RETRY_MS = { first: 100, max: 5000 };

export class Worker {
  readonly id: string;
  readonly #rt: WorkerRuntime;
  #state: WorkerState = 'new';
  readonly #running = new Set<Promise<void>>();
  readonly #waiting = new Map<Delivery, { timer: NodeJS.Timeout; retries: number }>();
  /** Retries on their way back to a queue (a timer fired): a drain waits for them before it closes connections. */
  readonly #sending = new Set<Promise<void>>();
  readonly #stats: WorkerStats = { processed: 0, duplicates: 0, retried: 0, dead: 0, inFlight: 0, waitingRetry: 0 };
  readonly #startedAt = new Date();
  #slotFreed: (() => void) | undefined;
  #fetching: Promise<void> | undefined;
  #beat: NodeJS.Timeout | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;

  constructor(runtime: WorkerRuntime) {
    this.#rt = runtime;
    this.id = runtime.id;
  }

  get state(): WorkerState {
    return this.#state;
  }

  stats(): WorkerStats {
    return { ...this.#stats, inFlight: this.#running.size, waitingRetry: this.#waiting.size };
  }

  /** Heartbeat first, then the return address (a reaper must never see the address of a worker with no heartbeat). */
  start(): Promise<void> {
    if (this.#starting) throw new Error(`worker ${this.id} was already started`);
    this.#starting = this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    await this.#rt.ready();
    await this.#heartbeat();
    await this.#rt.source.open();
    this.#state = 'running';
    this.#beat = setInterval(() => {
      this.#heartbeat().catch((err) => this.#rt.logger.warn({ err }, 'heartbeat failed; retrying'));
    }, this.#rt.heartbeatTtlMs / 3);
    this.#beat.unref();
    this.#rt.reaper?.start();
    this.#fetching = this.#fetchLoop();
    this.#rt.logger.info(
      { workerId: this.id, ...this.#rt.source.describes, concurrency: this.#rt.concurrency },
      'worker started',
    );
  }

  /**
   * Graceful drain (see the states above). Safe to call twice, and during `start()` (it drains once the start has
   * finished, so a worker stopped while starting leaves nothing behind either); resolves once everything is released.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.#starting?.catch(() => {});
      await this.#drain();
    })();
    return this.#stopping;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #drain(): Promise<void> {
    const wasRunning = this.#state === 'running';
    this.#state = 'draining';
    this.#slotFreed?.();
    if (wasRunning) this.#rt.logger.info({ workerId: this.id, running: this.#running.size }, 'worker draining');
    await this.#fetching;
    await this.#rt.reaper?.stop();
    const deadline = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), this.#rt.shutdownTimeoutMs).unref());
    if ((await Promise.race([Promise.all(this.#running), deadline])) === 'timeout') {
      this.#rt.logger.error(
        { running: this.#running.size },
        'jobs still running at shutdown_timeout; leaving them to the reaper',
      );
    }
    for (const [delivery, wait] of this.#waiting) {
      clearTimeout(wait.timer);
      void this.#sendBack(delivery, wait.retries);
    }
    this.#waiting.clear();
    await Promise.all(this.#sending);
    clearInterval(this.#beat);
    if (wasRunning) {
      try {
        await this.#rt.redis.del(this.#rt.keys.heartbeat(this.id));
        await this.#rt.source.close();
      } catch (err) {
        this.#rt.logger.warn(
          { err },
          'could not clear the heartbeat; the reaper returns what is left after heartbeat_ttl',
        );
      }
    }
    this.#state = 'stopped';
    await this.#rt.release();
    if (wasRunning) this.#rt.logger.info({ workerId: this.id, ...this.stats() }, 'worker stopped');
  }

  async #fetchLoop(): Promise<void> {
    let delay = REDIS_RETRY_MS.first;
    while (this.#state === 'running') {
      const free = this.#rt.concurrency - this.#running.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => {
          this.#slotFreed = resolve;
        });
        continue;
      }
      let deliveries: Delivery[];
      try {
        deliveries = await this.#rt.source.take(free);
        delay = REDIS_RETRY_MS.first;
      } catch (err) {
        this.#rt.logger.warn({ err, retryInMs: delay }, 'could not take jobs; retrying');
        await sleep(delay);
        delay = Math.min(delay * 2, REDIS_RETRY_MS.max);
        continue;
      }
      for (const delivery of deliveries) {
        const run = this.#run(delivery).finally(() => {
          this.#running.delete(run);
          this.#rt.metrics.workerInFlight?.(this.#running.size);
          this.#slotFreed?.();
        });
        this.#running.add(run);
      }
      if (deliveries.length > 0) this.#rt.metrics.workerInFlight?.(this.#running.size);
    }
  }

  async #run(delivery: Delivery): Promise<void> {
    const started = performance.now();
    const log = this.#rt.logger;
    if ('problem' in delivery.parsed) {
      const { problem } = delivery.parsed;
      await this.#settle(delivery, () => this.#rt.source.dead(delivery, `invalid job: ${problem}`, 0));
      this.#count('dead', delivery, started);
      log.error({ queue: delivery.from, problem }, 'invalid job moved to the dead-letter list');
      return;
    }
    const { job } = delivery.parsed;
    const context = {
      jobId: job.id,
      queue: delivery.from,
      attempt: job.retries + 1,
      traceId: job.trace_id || undefined,
    };
    let result: ProcessResult<unknown>;
    try {
      result = await this.#rt.execute(job, job.retries + 1);
    } catch (err) {
      await this.#failed(delivery, job, err, started);
      return;
    }
    await this.#settle(delivery, () => this.#rt.source.complete(delivery));
    this.#count(result.duplicate ? 'duplicate' : 'processed', delivery, started);
    log.info(context, result.duplicate ? 'job was a duplicate: its effect had happened already' : 'job processed');
  }

  async #failed(delivery: Delivery, job: WorkerJob, err: unknown, started: number): Promise<void> {
    const log = this.#rt.logger;
    const context = { jobId: job.id, queue: delivery.from, attempt: job.retries + 1, err };
    const message = err instanceof Error ? err.message : String(err);
    if (PERMANENT.some((type) => err instanceof type)) {
      await this.#settle(delivery, () => this.#rt.source.dead(delivery, message, job.retries));
      this.#count('dead', delivery, started);
      log.error(context, 'job cannot run (its idempotency key is unusable): moved to the dead-letter list');
      return;
    }
    if (TRANSIENT.some((type) => err instanceof type)) {
      // Not the job's fault (another worker holds its key, the store is down): again later, no attempt counted.
      await this.#waitForRetry(delivery, job.retries, this.#backoff(job.retries + 1));
      this.#count('retried', delivery, started);
      log.warn(
        { ...context, retryInMs: this.#backoff(job.retries + 1) },
        'job postponed: the idempotency store could not run it now',
      );
      return;
    }
    const retries = job.retries + 1;
    if (retries <= this.#rt.maxRetries) {
      const delay = this.#backoff(retries);
      await this.#waitForRetry(delivery, retries, delay);
      this.#count('retried', delivery, started);
      log.warn({ ...context, retries, retryInMs: delay }, 'job failed; will be retried');
      return;
    }
    await this.#settle(delivery, () => this.#rt.source.dead(delivery, message, retries));
    this.#count('dead', delivery, started);
    log.error({ ...context, retries }, 'job failed its last attempt: moved to the dead-letter list');
  }

  /** go-redis-work-queue's backoff: `base * 2^(retries-1)`, at most `max`. */
  #backoff(retries: number): number {
    const { baseMs, maxMs } = this.#rt.backoff;
    return Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(retries - 1, 0), 30));
  }

  /**
   * The job waits in the processing list (still this worker's: a crash now leaves it to the reaper) and its slot is
   * free for other jobs meanwhile; when the delay is over it goes back to its queue with `retries` as its count.
   */
  async #waitForRetry(delivery: Delivery, retries: number, delayMs: number): Promise<void> {
    if (this.#state !== 'running') {
      await this.#sendBack(delivery, retries);
      return;
    }
    const timer = setTimeout(() => {
      this.#waiting.delete(delivery);
      void this.#sendBack(delivery, retries);
    }, delayMs);
    this.#waiting.set(delivery, { timer, retries });
  }

  #sendBack(delivery: Delivery, retries: number): Promise<void> {
    const sending = this.#settle(delivery, () => this.#rt.source.retry(delivery, retries)).finally(() =>
      this.#sending.delete(sending),
    );
    this.#sending.add(sending);
    return sending;
  }

  /**
   * An acknowledgement, retry or dead-letter move, retried through a Redis outage: until it lands the job sits in the
   * processing list of a live worker, where nobody else would pick it up. Past `shutdown_timeout` of a draining
   * worker it gives up; the job is then returned by the reaper and its next run is a duplicate.
   */
  async #settle(delivery: Delivery, move: () => Promise<void>): Promise<void> {
    let delay = REDIS_RETRY_MS.first;
    const giveUpAt = () =>
      this.#state === 'running' ? Number.POSITIVE_INFINITY : Date.now() + this.#rt.shutdownTimeoutMs;
    for (;;) {
      try {
        await move();
        return;
      } catch (err) {
        if (Date.now() > giveUpAt()) {
          this.#rt.logger.error(
            { err, queue: delivery.from },
            'could not settle a job before shutdown; the reaper returns it',
          );
          return;
        }
        this.#rt.logger.warn(
          { err, queue: delivery.from, retryInMs: delay },
          'could not settle a job in Redis; retrying',
        );
        await sleep(delay);
        delay = Math.min(delay * 2, REDIS_RETRY_MS.max);
      }
    }
  }

  #count(outcome: JobOutcome, delivery: Delivery, started: number): void {
    if (outcome === 'processed') this.#stats.processed++;
    else if (outcome === 'duplicate') this.#stats.duplicates++;
    else if (outcome === 'retried') this.#stats.retried++;
    else this.#stats.dead++;
    try {
      this.#rt.metrics.workerJob?.(delivery.from, outcome, (performance.now() - started) / 1000);
    } catch {
      // metrics never break processing
    }
  }

  async #heartbeat(): Promise<void> {
    const value = {
      id: this.id,
      name: this.#rt.name,
      runtime: 'node',
      kind: this.#rt.source.kind,
      host: hostname(),
      pid: process.pid,
      concurrency: this.#rt.concurrency,
      started_at: this.#startedAt.toISOString(),
      beat_at: new Date().toISOString(),
      ...this.#rt.source.describes,
      ...this.stats(),
    };
    await this.#rt.redis.set(this.#rt.keys.heartbeat(this.id), JSON.stringify(value), 'PX', this.#rt.heartbeatTtlMs);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
