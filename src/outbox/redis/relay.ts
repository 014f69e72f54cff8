import { randomBytes } from 'node:crypto';
import type { Config } from '../../config/load-config.js';
import { MAX_INT_MS } from '../../config/schema.js';
import { CircuitOpenError, PublishUnavailableError } from '../../errors.js';
import { type Logger, silentLogger } from '../../logger.js';
import { keySlot } from '../../publishers/hash-tag.js';
import { jobJson, priorityOf } from '../../publishers/job.js';
import { isCluster, type RedisClient } from '../../redis.js';
import { type DestinationPolicy, destinationPolicy } from '../allowed-queues.js';
import { backoffDelay } from '../backoff.js';
import { type BreakerPermit, CircuitBreaker, type RelayHealth } from '../circuit-breaker.js';
import { type PublishSummary, ZERO_SUMMARY } from '../mark-plan.js';
import type { RelayMetrics } from '../relay.js';
import { Wakeup } from '../wakeup.js';
import { type ClaimedRedisEvent, toClaimed } from './claimed.js';
import { RedisDoorbell } from './doorbell.js';
import { RedisOutboxInspector } from './inspector.js';
import { type OutboxKeys, outboxKeys } from './keys.js';
import { type OutboxScripts, outboxScripts } from './scripts.js';

export interface RedisOutboxRelayOptions {
  config: Config;
  /** The server (or cluster) holding both the outbox keys and the destination lists. */
  redis: RedisClient;
  logger?: Logger;
  /** Where the relay reports (`Metrics` implements it); `cleanupRun` is fed by retention cleanup. */
  metrics?: RelayMetrics & { cleanupRun?(type: 'outbox', deleted: number, ok: boolean): void };
  /** Shown in logs. @defaultValue random */
  relayId?: string;
}

/** Move-script replies per event (lua/move.lua). */
enum Moved {
  published = 1,
  held = 2,
  lost = 3,
  failed = 4,
  retried = 5,
}

const OUTAGE_BACKOFF = { initialDelay: 100, maxDelay: 5000, multiplier: 2, jitter: true };
const MAX_ERROR_LENGTH = 2000;
/** Fields of one claimed event in the claim script's reply. */
const CLAIM_STRIDE = 6;

/**
 * The relay of the Redis outbox (`outbox.storage_type: redis`), with the Postgres `Relay`'s public shape (start, stop,
 * publishDue, health, wake). Each batch is two scripts on the one Redis that holds the outbox and the destinations:
 * claim (lua/claim-4.lua: lease due aggregates to this relay for `claim_timeout`) and move (lua/move.lua: push each
 * event and mark it published in the same script, so no dedup marker is needed: exactly once, G2). Between the two,
 * this process builds the go-redis-work-queue jobs (the Postgres relay's `jobJson`), applies the destination
 * allow-list and computes retry delays (`backoffDelay`). Any number of relays share the work through the leases; a
 * crashed relay's aggregates are taken over when its leases end (G5), and only an aggregate's head event may ever be
 * pushed, so order per aggregate holds (G3).
 *
 * @example
 * const relay = new RedisOutboxRelay({ config, redis });
 * await relay.start();
 * process.on('SIGTERM', () => relay.stop());
 */
export class RedisOutboxRelay {
  readonly relayId: string;
  readonly #config: Config;
  readonly #redis: RedisClient;
  readonly #keys: OutboxKeys;
  readonly #scripts: OutboxScripts;
  readonly #log: Logger;
  readonly #metrics: RedisOutboxRelayOptions['metrics'];
  readonly #breaker: CircuitBreaker;
  readonly #destinations: DestinationPolicy;
  readonly #inspector: RedisOutboxInspector;
  /** Lease holder name in Redis: unique per relay object, so two loops of one process never mistake each other. */
  readonly #token: string;
  readonly #wakeup = new Wakeup();
  readonly #doorbell: RedisDoorbell;
  #loops: Promise<void>[] = [];
  #stopping = false;
  #cleanupTimer: NodeJS.Timeout | undefined;
  #cleaning: Promise<unknown> | undefined;
  /** Earliest retry this process scheduled (`performance.now()` time). */
  #nextRetryAt = Number.POSITIVE_INFINITY;

  constructor(options: RedisOutboxRelayOptions) {
    this.relayId = options.relayId ?? randomBytes(4).toString('hex');
    this.#config = options.config;
    this.#redis = options.redis;
    this.#keys = outboxKeys(this.#config.outbox.redis.keyPrefix);
    this.#scripts = outboxScripts(this.#redis);
    this.#log = (options.logger ?? silentLogger).child({ component: 'relay', relayId: this.relayId, storage: 'redis' });
    this.#metrics = options.metrics;
    this.#token = `${this.relayId}:${randomBytes(6).toString('hex')}`;
    const breaker = this.#config.outbox.circuitBreaker;
    this.#breaker = new CircuitBreaker({
      enabled: breaker.enabled,
      failureThreshold: breaker.failureThreshold,
      openForMs: breaker.openFor,
      logger: this.#log,
      onState: (state) => {
        this.#metrics?.breakerState?.(state);
        if (state === 'closed') this.#wakeup.wake();
      },
    });
    this.#destinations = destinationPolicy(this.#config.outbox);
    this.#inspector = new RedisOutboxInspector(this.#redis, this.#config.outbox);
    this.#doorbell = new RedisDoorbell(this.#redis, this.#keys.doorbell, () => this.#wakeup.wake(), this.#log);
  }

  /** Can this relay publish? Not while its circuit breaker is open (Redis unreachable, OOM, READONLY, ...). */
  health(): RelayHealth {
    return this.#breaker.health();
  }

  /**
   * Run `outbox.concurrency` claim loops, woken by the doorbell (doorbell.ts) when an app's EXEC makes work due, by
   * `poll_interval` otherwise; and the retention cleanup (every `cleanup_interval`).
   */
  async start(): Promise<void> {
    this.#stopping = false;
    this.#doorbell.start();
    const n = this.#config.outbox.concurrency;
    this.#metrics?.breakerState?.(this.#breaker.state);
    this.#loops = Array.from({ length: n }, (_, i) => this.#loop(i));
    this.#scheduleCleanup(0);
    this.#log.info({ concurrency: n, batchSize: this.#config.outbox.batchSize }, 'relay started (Redis outbox)');
  }

  /** Finish the batches in flight, then stop; safe to call twice. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#doorbell.stop();
    clearTimeout(this.#cleanupTimer);
    this.#wakeup.wake();
    await Promise.allSettled(this.#loops);
    this.#loops = [];
    await this.#cleaning?.catch(() => {});
    this.#log.info('relay stopped');
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Wake sleeping loops now (e.g. after an admin retry). */
  wake(): void {
    this.#wakeup.wake();
  }

  /** Publish everything due right now and say what happened (the library's `publishOutboxEvents`). */
  async publishDue(): Promise<PublishSummary> {
    const total = { ...ZERO_SUMMARY };
    for (;;) {
      const batch = await this.runBatch();
      for (const k of Object.keys(total) as (keyof PublishSummary)[]) total[k] += batch[k];
      if (batch.claimed === 0 || batch.claimed === batch.held) return total;
    }
  }

  /** Delete published and failed events older than `outbox.cleanup_after`. */
  async cleanup(): Promise<{ deleted: number; batches: number }> {
    try {
      const result = await this.#inspector.cleanup(this.#config.outbox.cleanupAfter);
      this.#metrics?.cleanupRun?.('outbox', result.deleted, true);
      return result;
    } catch (err) {
      this.#metrics?.cleanupRun?.('outbox', 0, false);
      throw err;
    }
  }

  /** One claim -> build -> move. Throws when Redis is unavailable, and `CircuitOpenError` while the breaker is open. */
  async runBatch(): Promise<PublishSummary> {
    const permit = this.#breaker.enter();
    if (!permit) throw new CircuitOpenError(this.#breaker.waitMs(), this.#breaker.lastError);
    let used = false;
    try {
      const started = performance.now();
      let events: ClaimedRedisEvent[];
      try {
        events = await this.#claim();
      } catch (err) {
        used = true;
        this.#breaker.failure(permit, err);
        throw err;
      }
      if (events.length === 0) return { ...ZERO_SUMMARY };
      used = true;
      const summary = await this.#move(events, permit);
      this.#record(summary, (performance.now() - started) / 1000);
      return summary;
    } finally {
      if (!used) this.#breaker.leave(permit);
    }
  }

  async #claim(): Promise<ClaimedRedisEvent[]> {
    const o = this.#config.outbox;
    const k = this.#keys;
    const reply = (await this.#scripts.claim(
      4,
      k.due,
      k.delayed,
      k.leases,
      k.owners,
      k.prefix,
      this.#token,
      Math.max(1, Math.round(o.claimTimeout)),
      Math.max(o.claimWindow, o.batchSize),
      o.batchSize,
    )) as string[];
    const events: ClaimedRedisEvent[] = [];
    for (let i = 1; i + CLAIM_STRIDE - 1 < reply.length; i += CLAIM_STRIDE) {
      const [aggregate, id, data, seq, created, retries] = reply.slice(i, i + CLAIM_STRIDE) as string[];
      events.push(
        toClaimed(
          aggregate as string,
          id as string,
          data as string,
          seq as string,
          created as string,
          retries as string,
        ),
      );
    }
    return events;
  }

  async #move(events: ClaimedRedisEvent[], permit: BreakerPermit): Promise<PublishSummary> {
    const o = this.#config.outbox;
    const k = this.#keys;
    const lists = new Map<string, number>();
    const args: (string | number)[] = [];
    for (const event of events) {
      const plan = this.#plan(event);
      let index = 0;
      if ('list' in plan) {
        index = lists.get(plan.list) ?? lists.size + 1;
        lists.set(plan.list, index);
      }
      const attempt = event.retryCount + 1;
      const final = ('permanent' in plan && plan.permanent) || attempt > (event.maxRetries ?? o.maxRetries);
      args.push(
        event.aggregate,
        event.id,
        index,
        'list' in plan ? plan.job : plan.error.slice(0, MAX_ERROR_LENGTH),
        backoffDelay(attempt, o.retryBackoff),
        final ? '1' : '0',
      );
    }
    const fixed = [k.leases, k.owners, k.due, k.delayed, k.pending, k.published, k.failed];
    const started = performance.now();
    let reply: (number | string | null)[];
    try {
      reply = (await this.#scripts.move(
        fixed.length + lists.size,
        ...fixed,
        ...lists.keys(),
        k.prefix,
        this.#token,
        ...args,
      )) as (number | string | null)[];
    } catch (err) {
      // Unknown whether the script ran: either way every event is marked as it is on its list, and the leases end.
      this.#breaker.failure(permit, err);
      throw err;
    }
    this.#metrics?.redisRoundTrip((performance.now() - started) / 1000);
    const summary: PublishSummary = { ...ZERO_SUMMARY, claimed: events.length };
    events.forEach((event, i) => {
      const r = reply[i];
      const at = 6 * i + 3;
      if (r === Moved.published) summary.published++;
      else if (r === Moved.failed) {
        summary.failed++;
        this.#log.error(
          { eventId: event.id, attempts: event.retryCount + 1, error: args[at] },
          'event failed permanently; marked failed',
        );
      } else if (r === Moved.retried) {
        summary.retried++;
        const delay = args[at + 1] as number;
        const due = performance.now() + delay;
        this.#nextRetryAt = this.#nextRetryAt > performance.now() ? Math.min(this.#nextRetryAt, due) : due;
        this.#log.warn(
          { eventId: event.id, attempt: event.retryCount + 1, delayMs: delay },
          'publish failed; retry scheduled',
        );
      } else summary.held++;
    });
    const stopped = reply[events.length];
    if (typeof stopped === 'string') {
      const err = new PublishUnavailableError(`Redis refused a push: ${stopped}`);
      this.#breaker.failure(permit, err);
      this.#record(summary, 0);
      throw err;
    }
    this.#breaker.success(permit);
    return summary;
  }

  /** Where an event goes and its job, or why it cannot go (`permanent`: no retry can change that). */
  #plan(event: ClaimedRedisEvent): { list: string; job: string } | { error: string; permanent?: boolean } {
    if (event.unreadable !== undefined) return { error: `event is unreadable: ${event.unreadable}`, permanent: true };
    const o = this.#config.outbox;
    const priority = priorityOf(event, o.defaultPriority);
    const list = event.queue ?? o.queuePattern.replaceAll('{priority}', priority);
    if (event.queue !== null) {
      const reason = this.#destinations.reason(event.queue);
      if (reason !== undefined) return { error: `destination refused: ${reason}`, permanent: true };
    }
    if (event.destinationKind === 'stream') {
      return {
        error: 'destination refused: streams are not available with outbox.storage_type: redis',
        permanent: true,
      };
    }
    if (list.startsWith(this.#keys.prefix)) {
      return { error: `destination refused: ${JSON.stringify(list)} is one of the outbox's own keys`, permanent: true };
    }
    if (isCluster(this.#redis) && keySlot(list) !== keySlot(this.#keys.due)) {
      return {
        error: `destination refused: ${JSON.stringify(list)} is in another cluster slot than the outbox; it cannot be moved atomically`,
        permanent: true,
      };
    }
    let job: string;
    try {
      job = jobJson(event, priority);
    } catch (err) {
      return { error: `event has no job form: ${(err as Error).message}` };
    }
    if (Buffer.byteLength(job) > o.maxJobBytes) {
      return {
        error: `job is ${Buffer.byteLength(job)} bytes, above outbox.max_job_bytes (${o.maxJobBytes})`,
        permanent: true,
      };
    }
    return { list, job };
  }

  #record(summary: PublishSummary, seconds: number): void {
    const m = this.#metrics;
    if (!m) return;
    m.outboxBatch(summary.claimed, seconds);
    if (summary.published > 0) m.outboxPublished(summary.published);
    if (summary.failed > 0) m.outboxFailed(summary.failed);
    if (summary.retried > 0) m.outboxRetried?.(summary.retried);
  }

  #scheduleCleanup(delayMs: number): void {
    if (this.#stopping) return;
    this.#cleanupTimer = setTimeout(() => {
      this.#cleaning = this.cleanup()
        .then((r) => {
          if (r.deleted > 0) this.#log.info({ deleted: r.deleted }, 'deleted old published and failed outbox events');
        })
        .catch((err: unknown) => this.#log.warn({ err }, 'outbox cleanup failed; retried at the next interval'))
        .finally(() => this.#scheduleCleanup(Math.min(this.#config.outbox.cleanupInterval, MAX_INT_MS)));
    }, delayMs);
    this.#cleanupTimer.unref();
  }

  async #loop(index: number): Promise<void> {
    const log = this.#log.child({ loop: index });
    let outages = 0;
    while (!this.#stopping) {
      try {
        const openFor = this.#breaker.waitMs();
        if (openFor > 0) {
          await this.#wakeup.sleep(openFor);
          continue;
        }
        const batch = await this.runBatch();
        if (outages > 0) log.info({ afterFailures: outages }, 'relay recovered');
        outages = 0;
        if (batch.claimed > 0 && batch.claimed > batch.held) continue;
        await this.#wakeup.sleep(this.#idleDelay());
      } catch (err) {
        if (err instanceof CircuitOpenError) continue;
        outages++;
        const delay = backoffDelay(outages, OUTAGE_BACKOFF);
        const level = outages === 1 || outages % 20 === 0 ? 'warn' : 'debug';
        log[level]({ err, failures: outages, retryInMs: delay }, 'relay batch failed; backing off');
        await this.#wakeup.sleep(delay);
      }
    }
  }

  #idleDelay(): number {
    const poll = this.#config.outbox.pollInterval;
    const untilRetry = this.#nextRetryAt - performance.now();
    if (untilRetry > 0) return Math.min(poll, untilRetry + 5);
    if (this.#nextRetryAt !== Number.POSITIVE_INFINITY) {
      this.#nextRetryAt = Number.POSITIVE_INFINITY;
      return 0;
    }
    return poll;
  }
}
