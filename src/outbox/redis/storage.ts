import type { Config } from '../../config/load-config.js';
import { MAX_INT_MS } from '../../config/schema.js';
import type { Logger } from '../../logger.js';
import { keySlot } from '../../publishers/hash-tag.js';
import { jobJson, priorityOf } from '../../publishers/job.js';
import { isCluster, type RedisClient } from '../../redis.js';
import { type DestinationPolicy, destinationPolicy } from '../allowed-queues.js';
import { backoffDelay } from '../backoff.js';
import {
  ALWAYS_RINGING,
  type BatchResult,
  PartialBatchError,
  type PublishGate,
  type RelayStorage,
} from '../relay-core.js';
import { type PublishSummary, ZERO_SUMMARY } from '../summary.js';
import type { Wakeup } from '../wakeup.js';
import { type ClaimedRedisEvent, toClaimed } from './claimed.js';
import { RedisDoorbell } from './doorbell.js';
import { RedisOutboxInspector } from './inspector.js';
import { type OutboxKeys, outboxKeys } from './keys.js';
import { type OutboxScripts, outboxScripts } from './scripts.js';

export interface RedisStorageOptions {
  config: Config;
  redis: RedisClient;
  log: Logger;
  wakeup: Wakeup;
  /** Lease holder name in Redis: unique per relay object, so two loops of one process never mistake each other. */
  token: string;
  /** Fed by retention cleanup. */
  cleanupRun?: ((type: 'outbox', deleted: number, ok: boolean) => void) | undefined;
  /** Called with each move script's round-trip time in seconds. */
  onRoundTrip?: ((seconds: number) => void) | undefined;
}

/** Move-script replies per event (lua/move.lua). */
enum Moved {
  published = 1,
  held = 2,
  lost = 3,
  failed = 4,
  retried = 5,
}

const MAX_ERROR_LENGTH = 2000;
/** Fields of one claimed event in the claim script's reply. */
const CLAIM_STRIDE = 6;

/**
 * The Redis outbox under the relay core (`outbox.storage_type: redis`). Each batch is two scripts on the one Redis
 * that holds the outbox and the destinations: claim (lua/claim-4.lua: lease due aggregates to this relay for
 * `claim_timeout`) and move (lua/move.lua: push each event and mark it published in the same script, so no mark is
 * needed: exactly once, G2). Between the two, this process builds the go-redis-work-queue jobs (the Postgres relay's
 * `jobJson`), applies the destination allow-list and computes retry delays (`backoffDelay`). Both scripts run through
 * the core's gate: `outbox.publish_timeout` bounds them and the circuit breaker counts their outages, as for the
 * Postgres outbox. Any number of relays share the work through the leases; a crashed relay's aggregates are taken
 * over when its leases end (G5), and only an aggregate's head event may ever be pushed, so order per aggregate holds
 * (G3). It also deletes published and failed events older than `cleanup_after`, every `cleanup_interval`.
 */
export class RedisOutboxStorage implements RelayStorage {
  readonly name = 'redis';
  readonly doorbell = ALWAYS_RINGING;
  readonly #config: Config;
  readonly #redis: RedisClient;
  readonly #keys: OutboxKeys;
  readonly #scripts: OutboxScripts;
  readonly #log: Logger;
  readonly #destinations: DestinationPolicy;
  readonly #inspector: RedisOutboxInspector;
  readonly #token: string;
  readonly #bell: RedisDoorbell;
  readonly #cleanupRun: RedisStorageOptions['cleanupRun'];
  readonly #onRoundTrip: RedisStorageOptions['onRoundTrip'];
  #stopping = false;
  #cleanupTimer: NodeJS.Timeout | undefined;
  #cleaning: Promise<unknown> | undefined;

  constructor(options: RedisStorageOptions) {
    this.#config = options.config;
    this.#redis = options.redis;
    this.#keys = outboxKeys(this.#config.outbox.redis.keyPrefix);
    this.#scripts = outboxScripts(this.#redis);
    this.#log = options.log;
    this.#token = options.token;
    this.#cleanupRun = options.cleanupRun;
    this.#onRoundTrip = options.onRoundTrip;
    this.#destinations = destinationPolicy(this.#config.outbox);
    this.#inspector = new RedisOutboxInspector(this.#redis, this.#config.outbox);
    const wakeup = options.wakeup;
    this.#bell = new RedisDoorbell(this.#redis, this.#keys.doorbell, () => wakeup.wake(), this.#log);
  }

  async start(): Promise<void> {
    this.#stopping = false;
    this.#bell.start();
    this.#scheduleCleanup(0);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#bell.stop();
    clearTimeout(this.#cleanupTimer);
    await this.#cleaning?.catch(() => {});
  }

  async release(): Promise<void> {}

  /** Delete published and failed events older than `outbox.cleanup_after`. */
  async cleanup(): Promise<{ deleted: number; batches: number }> {
    try {
      const result = await this.#inspector.cleanup(this.#config.outbox.cleanupAfter);
      this.#cleanupRun?.('outbox', result.deleted, true);
      return result;
    } catch (err) {
      this.#cleanupRun?.('outbox', 0, false);
      throw err;
    }
  }

  /** One claim -> build -> move, both scripts through the gate. */
  async batch(gate: PublishGate): Promise<BatchResult> {
    const events = await gate.publish(() => this.#claim());
    if (events.length === 0) return { summary: { ...ZERO_SUMMARY }, more: false };
    const { summary, soonestRetryMs } = await gate.publish(() => this.#move(events));
    return { summary, more: summary.claimed > summary.held, soonestRetryMs };
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

  async #move(events: ClaimedRedisEvent[]): Promise<{ summary: PublishSummary; soonestRetryMs?: number }> {
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
    // A throw (even a timeout) leaves it unknown whether the script ran: either way every event is marked as it is
    // on its list, and the leases end.
    const reply = (await this.#scripts.move(
      fixed.length + lists.size,
      ...fixed,
      ...lists.keys(),
      k.prefix,
      this.#token,
      ...args,
    )) as (number | string | null)[];
    this.#onRoundTrip?.((performance.now() - started) / 1000);
    const summary: PublishSummary = { ...ZERO_SUMMARY, claimed: events.length };
    let soonestRetryMs: number | undefined;
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
        soonestRetryMs = Math.min(soonestRetryMs ?? delay, delay);
        this.#log.warn(
          { eventId: event.id, attempt: event.retryCount + 1, delayMs: delay },
          'publish failed; retry scheduled',
        );
      } else summary.held++;
    });
    const stopped = reply[events.length];
    if (typeof stopped === 'string') {
      // The server refused mid-script (OOM, READONLY): what moved before is committed and counted.
      throw new PartialBatchError(`Redis refused a push: ${stopped}`, summary);
    }
    return soonestRetryMs === undefined ? { summary } : { summary, soonestRetryMs };
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
}
