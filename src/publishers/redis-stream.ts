import { readFileSync } from 'node:fs';
import { PublishUnavailableError } from '../errors.js';
import type { ClaimedEvent, Publisher, PublishOutcome } from '../outbox/types.js';
import { isCluster, type RedisClient } from '../redis.js';
import { chunkJobs, type PlannedJob, planBatch } from './batch-plan.js';
import { int64Text, parseTraceparent, priorityOf } from './job.js';
import { isBulkTooLarge, isOutage, isOutageReply } from './publish-errors.js';

const PUBLISH_STREAM_LUA = readFileSync(new URL('./lua/publish-stream-entries.lua', import.meta.url), 'utf8');

/**
 * The entry fields, in this order: the go-redis-work-queue job's fields, then the event's. `payload` and `headers`
 * are JSON text, exactly as the outbox row holds them; every other value is plain text.
 */
export const STREAM_FIELDS = [
  'id',
  'filepath',
  'filesize',
  'priority',
  'retries',
  'creation_time',
  'trace_id',
  'span_id',
  'event_type',
  'aggregate_type',
  'aggregate_id',
  'tenant_id',
  'payload',
  'headers',
] as const;

export interface RedisStreamPublisherOptions {
  /** Stream key; `{priority}` becomes `high` or `low` (`outbox.queue_pattern`). @defaultValue "jobqueue:{priority}_priority" */
  queuePattern?: string;
  /** @defaultValue "low" */
  defaultPriority?: 'high' | 'low';
  /** Dedup marker lifetime in ms (`outbox.dedup_window`). @defaultValue 24h */
  dedupWindowMs?: number;
  /** A batch slower than this throws (the relay retries it; markers make the retry safe). @defaultValue 5000 */
  timeoutMs?: number;
  /** `MAXLEN ~` of every XADD (`outbox.stream.maxlen`); `undefined`: no trimming. */
  maxlen?: number | undefined;
  /** Largest entry (UTF-8 bytes of its job JSON) to append (`outbox.max_job_bytes`). @defaultValue 536870912 */
  maxJobBytes?: number;
  /** Entry JSON characters per script call, so a batch of huge entries never makes one oversized request. @defaultValue 67108864 */
  maxCallChars?: number;
  /** Called with the round-trip time of each batch, in seconds. */
  onRoundTrip?: (seconds: number) => void;
}

type ScriptClient = RedisClient & {
  eoPublishStream(numKeys: number, ...args: (string | number)[]): Promise<(number | string)[]>;
};

/**
 * Publishes each event as one Redis Stream entry (`XADD <stream> * id ... payload ... headers ...`, see STREAM_FIELDS)
 * guarded by a per-event dedup marker in the same Lua script (lua/publish-stream-entries.lua), for consumers that want
 * consumer groups, acknowledgements and replay (examples/stream-consumer.ts).
 *
 * The guarantees and the failure attribution are the list publisher's, from the same helpers (batch-plan.ts,
 * publish-errors.ts, hash-tag.ts): each event is appended once within the dedup window (G2); events of an aggregate
 * are appended in order, and a failing event holds back only its own aggregate (G3); an outage (connection lost,
 * timeout, LOADING, READONLY, OOM, CLUSTERDOWN, ...) throws `PublishUnavailableError` and the relay backs off.
 * Markers are kept for the whole dedup window (this publisher has no `forget`), so a late call of an abandoned
 * attempt always meets its marker.
 */
export class RedisStreamPublisher implements Publisher {
  readonly #redis: ScriptClient;
  readonly #pattern: string;
  readonly #priority: 'high' | 'low';
  readonly #windowMs: number;
  readonly #timeoutMs: number;
  readonly #maxlen: number;
  readonly #maxJobBytes: number;
  readonly #maxCallChars: number;
  readonly #onRoundTrip: ((seconds: number) => void) | undefined;

  constructor(redis: RedisClient, options: RedisStreamPublisherOptions = {}) {
    if (!('eoPublishStream' in redis)) redis.defineCommand('eoPublishStream', { lua: PUBLISH_STREAM_LUA });
    this.#redis = redis as ScriptClient;
    this.#pattern = options.queuePattern ?? 'jobqueue:{priority}_priority';
    this.#priority = options.defaultPriority ?? 'low';
    this.#windowMs = Math.max(1, Math.round(options.dedupWindowMs ?? 86_400_000));
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#maxlen = options.maxlen ?? 0;
    this.#maxJobBytes = options.maxJobBytes ?? 512 * 1024 * 1024;
    this.#maxCallChars = options.maxCallChars ?? 64 * 1024 * 1024;
    this.#onRoundTrip = options.onRoundTrip;
  }

  /** The stream an event goes to: its `queue`, else `queuePattern` with its priority. */
  streamKeyFor(event: ClaimedEvent): string {
    return event.queue ?? this.#pattern.replaceAll('{priority}', priorityOf(event, this.#priority));
  }

  async publish(events: readonly ClaimedEvent[]): Promise<PublishOutcome[]> {
    const outcomes: PublishOutcome[] = new Array(events.length);
    const started = performance.now();
    const limit = this.#maxJobBytes;
    const work = (async () => {
      const groups = planBatch(events, outcomes, {
        cluster: isCluster(this.#redis),
        listKeyFor: (event) => this.streamKeyFor(event),
        priorityOf: (event) => priorityOf(event, this.#priority),
        limit: { bytes: limit, describe: (n) => `entry of ${n} bytes exceeds outbox.max_job_bytes (${limit})` },
      });
      // Slots in parallel; within a slot, calls in order (a group is one call unless its entries are huge).
      await Promise.all(
        groups.map(async (jobs) => {
          const failed = new Set<string>();
          for (const chunk of chunkJobs(jobs, this.#maxCallChars)) await this.#runCall(events, chunk, outcomes, failed);
        }),
      );
    })();
    await this.#withTimeout(work);
    this.#onRoundTrip?.((performance.now() - started) / 1000);
    return outcomes;
  }

  /** One script call; `failed` holds the aggregates that failed earlier in this slot, whose later entries are held. */
  async #runCall(
    events: readonly ClaimedEvent[],
    jobs: readonly PlannedJob[],
    outcomes: PublishOutcome[],
    failed: Set<string>,
  ): Promise<void> {
    const live = jobs.filter((job) => {
      if (!failed.has(job.aggregate)) return true;
      outcomes[job.index] = { kind: 'held' };
      return false;
    });
    if (live.length === 0) return;
    let replies: (number | string)[];
    try {
      replies = await this.#call(events, live);
    } catch (err) {
      // An oversized argument: the server closes the connection after saying so, so there is no splitting the call.
      if (isBulkTooLarge(err) || isOutage(err)) throw err;
      const [only] = live;
      if (live.length === 1 && only) {
        failed.add(only.aggregate);
        outcomes[only.index] = { kind: 'failed', error: (err as Error).message };
        return;
      }
      // Refused as a whole (CROSSSLOT, NOPERM on one key, ...): one call per entry finds the event to blame.
      for (const job of live) await this.#runCall(events, [job], outcomes, failed);
      return;
    }
    live.forEach((job, j) => {
      const reply = replies[j];
      if (reply === 1) outcomes[job.index] = { kind: 'published' };
      else if (reply === 0) outcomes[job.index] = { kind: 'duplicate' };
      else if (reply === 2) outcomes[job.index] = { kind: 'held' };
      else {
        const error = String(reply);
        if (isOutageReply(error)) throw new PublishUnavailableError(`Redis refused an XADD: ${error}`);
        failed.add(job.aggregate);
        outcomes[job.index] = { kind: 'failed', error };
      }
    });
  }

  #call(events: readonly ClaimedEvent[], jobs: readonly PlannedJob[]): Promise<(number | string)[]> {
    const streams = new Map<string, number>();
    for (const job of jobs) if (!streams.has(job.listKey)) streams.set(job.listKey, streams.size + 1);
    const keys: string[] = [...streams.keys(), ...jobs.map((job) => job.marker)];
    const args: (string | number)[] = [
      this.#windowMs,
      streams.size,
      this.#maxlen,
      STREAM_FIELDS.length,
      ...STREAM_FIELDS,
    ];
    for (const job of jobs) {
      args.push(streams.get(job.listKey) as number, job.aggregate, ...this.#fields(events[job.index] as ClaimedEvent));
    }
    return this.#redis.eoPublishStream(keys.length, ...keys, ...args);
  }

  /** The values of STREAM_FIELDS for one event (planBatch already built its job JSON, so its row has a job form). */
  #fields(event: ClaimedEvent): string[] {
    const { traceId, spanId } = parseTraceparent(event.traceparent);
    return [
      event.id,
      event.filepath ?? '',
      int64Text(event.filesize),
      priorityOf(event, this.#priority),
      '0',
      event.createdAt.toISOString(),
      traceId,
      spanId,
      event.eventType,
      event.aggregateType,
      event.aggregateId,
      event.tenantId,
      event.payload,
      event.headers,
    ];
  }

  async #withTimeout<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new PublishUnavailableError(`Redis publish took longer than ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      if (err instanceof PublishUnavailableError) throw err;
      throw new PublishUnavailableError(`Redis publish failed: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
      work.catch(() => {});
    }
  }
}
