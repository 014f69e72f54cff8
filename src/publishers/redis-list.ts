import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import { PublishUnavailableError } from '../errors.js';
import type { ClaimedEvent, Publisher, PublishOptions, PublishOutcome } from '../outbox/types.js';
import { chunkJobs, type JobLimit, largestArgument, type PlannedJob, planBatch } from './batch-plan.js';
import { dedupMarkerKey, keySlot } from './hash-tag.js';
import { priorityOf } from './job.js';
import { isBulkTooLarge, isOutage, isOutageReply, replyText } from './publish-errors.js';

const PUBLISH_JOBS_LUA = readFileSync(new URL('./lua/publish-jobs.lua', import.meta.url), 'utf8');
/** Redis's own default proto-max-bulk-len: no single argument may be larger. */
const REDIS_DEFAULT_MAX_BULK = 512 * 1024 * 1024;

export interface RedisListPublisherOptions {
  /** List key; `{priority}` becomes `high` or `low`. @defaultValue "jobqueue:{priority}_priority" */
  queuePattern?: string;
  /** @defaultValue "low" */
  defaultPriority?: 'high' | 'low';
  /** Dedup marker lifetime in ms (`outbox.dedup_window`). @defaultValue 24h */
  dedupWindowMs?: number;
  /** A batch slower than this throws (the relay retries it; markers make the retry safe). @defaultValue 5000 */
  timeoutMs?: number;
  /**
   * Largest job (UTF-8 bytes of its JSON) to push (`outbox.max_job_bytes`); a larger one fails on its own. The
   * server's proto-max-bulk-len, when `CONFIG GET` may read it, lowers this further. @defaultValue 536870912
   */
  maxJobBytes?: number;
  /**
   * Job JSON characters per script call: a slot's jobs beyond this go in further calls, one after the other, so a
   * batch of large jobs never makes a request the server's client-query-buffer-limit (1 GB) would cut off.
   * @defaultValue 67108864
   */
  maxCallChars?: number;
  /** Called with the round-trip time of each batch, in seconds. */
  onRoundTrip?: (seconds: number) => void;
}

type ScriptClient = (Redis | Cluster) & {
  eoPublishJobs(numKeys: number, ...args: (string | number)[]): Promise<(number | string)[]>;
};

/**
 * The default publisher: LPUSHes one go-redis-work-queue job per event onto a Redis list (consumers pop from the
 * right, so each list is FIFO), guarded by a per-event dedup marker in the same Lua script (lua/publish-jobs.lua).
 *
 * Failures are attributed, so that one event can never stop the outbox (issue 9.1):
 * - An error only one event causes is that event's `failed` outcome — the relay retries it with backoff, then marks it
 *   `failed` — and later events of its aggregate are `held`; every other aggregate of the batch is published in the
 *   same batch. Caught before Redis: a job that cannot be built, a job above `maxJobBytes` or the server's
 *   proto-max-bulk-len. Caught per job inside the script: WRONGTYPE and any other error reply of its SET or LPUSH.
 *   A whole call refused for a reason that is not an outage (CROSSSLOT, NOPERM on a key) is split into one call per
 *   job to find the event(s) to blame.
 * - The server's state (connection lost, timeout, LOADING, READONLY, BUSY, OOM when full, CLUSTERDOWN, ... see
 *   publish-errors.ts) throws `PublishUnavailableError`: the relay rolls back and backs off, counting no retry. Jobs
 *   already pushed keep their markers, so the next attempt records them as duplicates instead of pushing again.
 */
export class RedisListPublisher implements Publisher {
  readonly #redis: ScriptClient;
  readonly #pattern: string;
  readonly #priority: 'high' | 'low';
  readonly #windowMs: number;
  readonly #timeoutMs: number;
  readonly #maxJobBytes: number;
  readonly #maxCallChars: number;
  readonly #onRoundTrip: ((seconds: number) => void) | undefined;
  /** The server's proto-max-bulk-len: `undefined` until read, `null` when CONFIG is not available to us. */
  #serverMaxBulk: number | null | undefined;
  /** Below the size of a job the server refused ("invalid bulk length") when we could not read its limit. */
  #learnedMaxBulk = Number.POSITIVE_INFINITY;
  /**
   * Per cluster slot (0 on a standalone server): the server's clock minus `performance.now()`, in ms, never above the
   * truth (read as the reply arrives), so a deadline converted with it is never later than meant. Refreshed by every
   * script reply; absent until the first call to that slot asks the server.
   */
  readonly #clockOffsets = new Map<number, number>();

  constructor(redis: Redis | Cluster, options: RedisListPublisherOptions = {}) {
    if (!('eoPublishJobs' in redis)) redis.defineCommand('eoPublishJobs', { lua: PUBLISH_JOBS_LUA });
    this.#redis = redis as ScriptClient;
    this.#pattern = options.queuePattern ?? 'jobqueue:{priority}_priority';
    this.#priority = options.defaultPriority ?? 'low';
    this.#windowMs = Math.max(1, Math.round(options.dedupWindowMs ?? 86_400_000));
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#maxJobBytes = options.maxJobBytes ?? REDIS_DEFAULT_MAX_BULK;
    this.#maxCallChars = options.maxCallChars ?? 64 * 1024 * 1024;
    this.#onRoundTrip = options.onRoundTrip;
  }

  get #cluster(): boolean {
    return (this.#redis as { isCluster?: boolean }).isCluster === true;
  }

  /** The list an event goes to. */
  listKeyFor(event: ClaimedEvent): string {
    return event.queue ?? this.#pattern.replaceAll('{priority}', priorityOf(event, this.#priority));
  }

  async publish(events: readonly ClaimedEvent[], options: PublishOptions = {}): Promise<PublishOutcome[]> {
    const outcomes: PublishOutcome[] = new Array(events.length);
    const started = performance.now();
    // Past this moment the caller may have rolled back (our timeout, or its claim's), and another relay may publish.
    const deadline = Math.min(started + this.#timeoutMs, options.deadline ?? Number.POSITIVE_INFINITY);
    await this.#withTimeout(
      (async () => {
        const groups = planBatch(events, outcomes, {
          cluster: this.#cluster,
          listKeyFor: (event) => this.listKeyFor(event),
          priorityOf: (event) => priorityOf(event, this.#priority),
          limit: await this.#jobLimit(),
        });
        // Slots in parallel; within a slot, calls in order (a group is one call unless its jobs are huge).
        await Promise.all(groups.map((jobs) => this.#runGroup(jobs, outcomes, deadline)));
      })(),
    );
    this.#onRoundTrip?.((performance.now() - started) / 1000);
    return outcomes;
  }

  /**
   * Delete the dedup markers of events whose rows are committed as published: one UNLINK per slot, in parallel.
   * Rejects if any UNLINK failed; whatever it did not delete expires after `dedupWindowMs`.
   */
  async forget(events: readonly ClaimedEvent[]): Promise<void> {
    if (events.length === 0) return;
    const bySlot = new Map<number, string[]>();
    for (const event of events) {
      const listKey = this.listKeyFor(event);
      const slot = this.#cluster ? keySlot(listKey) : 0;
      let keys = bySlot.get(slot);
      if (!keys) {
        keys = [];
        bySlot.set(slot, keys);
      }
      keys.push(dedupMarkerKey(listKey, event.id));
    }
    await Promise.all([...bySlot.values()].map((keys) => this.#redis.unlink(...keys)));
  }

  async #runGroup(jobs: readonly PlannedJob[], outcomes: PublishOutcome[], deadline: number): Promise<void> {
    const failed = new Set<string>();
    for (const chunk of chunkJobs(jobs, this.#maxCallChars)) await this.#runCall(chunk, outcomes, failed, deadline);
  }

  /** One script call; `failed` holds the aggregates that failed earlier in this group, whose later jobs are held. */
  async #runCall(
    jobs: readonly PlannedJob[],
    outcomes: PublishOutcome[],
    failed: Set<string>,
    deadline: number,
  ): Promise<void> {
    const live = jobs.filter((job) => {
      if (!failed.has(job.aggregate)) return true;
      outcomes[job.index] = { kind: 'held' };
      return false;
    });
    if (live.length === 0) return;
    let replies: (number | string)[];
    try {
      replies = await this.#call(live, deadline);
    } catch (err) {
      if (replyText(err)?.startsWith('STALE ') === true) {
        // Our clock estimate may be off (a clock step on either side): ask the server again next time.
        this.#clockOffsets.clear();
        throw new PublishUnavailableError(`Redis refused a late publish call: ${replyText(err)}`, { cause: err });
      }
      if (isBulkTooLarge(err)) {
        // The server closes the connection after this reply, so there is no splitting the call now. Remember that its
        // largest job is too large: from the next batch on it fails on its own, before it is sent.
        this.#learnedMaxBulk = Math.min(this.#learnedMaxBulk, Math.max(...live.map(largestArgument)) - 1);
      }
      if (isBulkTooLarge(err) || isOutage(err)) throw err;
      const [only] = live;
      if (live.length === 1 && only) {
        failed.add(only.aggregate);
        outcomes[only.index] = { kind: 'failed', error: (err as Error).message };
        return;
      }
      // Refused as a whole (CROSSSLOT, NOPERM on one key, ...): one call per job finds the event to blame.
      for (const job of live) await this.#runCall([job], outcomes, failed, deadline);
      return;
    }
    live.forEach((job, j) => {
      const reply = replies[j];
      if (reply === 1) outcomes[job.index] = { kind: 'published' };
      else if (reply === 0) outcomes[job.index] = { kind: 'duplicate' };
      else if (reply === 2) outcomes[job.index] = { kind: 'held' };
      else {
        const error = String(reply);
        if (isOutageReply(error)) throw new PublishUnavailableError(`Redis refused a push: ${error}`);
        failed.add(job.aggregate);
        outcomes[job.index] = { kind: 'failed', error };
      }
    });
  }

  async #call(jobs: readonly PlannedJob[], deadline: number): Promise<(number | string)[]> {
    const lists = new Map<string, number>();
    for (const job of jobs) if (!lists.has(job.listKey)) lists.set(job.listKey, lists.size + 1);
    const keys: string[] = [...lists.keys(), ...jobs.map((job) => job.marker)];
    const first = keys[0] as string;
    const slot = this.#cluster ? keySlot(first) : 0;
    let offset = this.#clockOffsets.get(slot);
    if (offset === undefined) offset = await this.#readClock(slot, first);
    // Whole milliseconds, rounded down: never later than the deadline meant.
    const serverDeadline = Number.isFinite(deadline) ? Math.max(1, Math.floor(deadline + offset)) : 0;
    const args: (string | number)[] = [this.#windowMs, lists.size, serverDeadline];
    for (const job of jobs) args.push(lists.get(job.listKey) as number, job.aggregate, job.json);
    const replies = await this.#redis.eoPublishJobs(keys.length, ...keys, ...args);
    const serverNow = replies.pop();
    if (typeof serverNow === 'number') this.#clockOffsets.set(slot, serverNow - performance.now());
    return replies;
  }

  /** The clock offset of the server holding `key` (one round trip, routed by the key in a cluster). */
  async #readClock(slot: number, key: string): Promise<number> {
    const [seconds, micros] = (await this.#redis.eval('return redis.call("TIME")', 1, key)) as [string, string];
    const offset = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - performance.now();
    this.#clockOffsets.set(slot, offset);
    return offset;
  }

  /** The smallest of `maxJobBytes`, the server's proto-max-bulk-len (read once) and what a refusal taught us. */
  async #jobLimit(): Promise<JobLimit> {
    if (this.#serverMaxBulk === undefined) {
      try {
        const reply = (await this.#redis.call('CONFIG', 'GET', 'proto-max-bulk-len')) as string[];
        const value = Number(reply[1]);
        this.#serverMaxBulk = Number.isSafeInteger(value) && value > 0 ? value : null;
      } catch (err) {
        // Refused (CONFIG renamed away, an ACL without it): do without. Unreachable: the publish will tell; ask again.
        if (replyText(err) !== undefined) this.#serverMaxBulk = null;
      }
    }
    const limits: JobLimit[] = [
      {
        bytes: this.#maxJobBytes,
        describe: (n) => `job of ${n} bytes exceeds outbox.max_job_bytes (${this.#maxJobBytes})`,
      },
    ];
    const server = this.#serverMaxBulk;
    if (server) {
      limits.push({
        bytes: server,
        describe: (n) => `job of ${n} bytes exceeds the Redis server's proto-max-bulk-len (${server})`,
      });
    }
    const learned = this.#learnedMaxBulk;
    limits.push({
      bytes: learned,
      describe: (n) =>
        `job of ${n} bytes is too large for the Redis server, which refused a call holding it ("invalid bulk ` +
        'length"); set outbox.max_job_bytes below its proto-max-bulk-len',
    });
    return limits.reduce((a, b) => (b.bytes < a.bytes ? b : a));
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
