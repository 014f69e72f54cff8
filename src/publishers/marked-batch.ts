import { readFileSync } from 'node:fs';
import { PublishUnavailableError } from '../errors.js';
import { type DestinationPolicy, destinationPolicy } from '../outbox/allowed-queues.js';
import type { ClaimedEvent, Publisher, PublishOptions, PublishOutcome } from '../outbox/types.js';
import { isCluster, type RedisClient } from '../redis.js';
import { withTimeout } from '../timeout.js';
import { chunkJobs, type JobLimit, largestArgument, type PlannedJob, planBatch } from './batch-plan.js';
import { type DestinationKind, destinationKindOf, LIST_SCRIPT, streamScript } from './destination-kind.js';
import { keySlot, markKey } from './hash-tag.js';
import { priorityOf } from './job.js';
import { isBulkTooLarge, isOutage, isOutageReply, replyText } from './publish-errors.js';

/** Redis's own default proto-max-bulk-len: no single argument may be larger. */
export const REDIS_DEFAULT_MAX_BULK = 512 * 1024 * 1024;

/** The options both Redis publishers take (RedisListPublisherOptions; RedisStreamPublisherOptions adds to them). */
export interface MarkedBatchOptions {
  /** Destination key; `{priority}` becomes `high` or `low`. @defaultValue "jobqueue:{priority}_priority" */
  queuePattern?: string;
  /** @defaultValue "low" */
  defaultPriority?: 'high' | 'low';
  /** How long an idle high-water mark lives, in ms (`outbox.dedup_window`). @defaultValue 24h */
  dedupWindowMs?: number;
  /** A batch slower than this throws (the relay retries it; the marks make the retry safe). @defaultValue 5000 */
  timeoutMs?: number;
  /**
   * Largest job (UTF-8 bytes of its JSON) to write (`outbox.max_job_bytes`); a larger one fails on its own. The
   * server's proto-max-bulk-len, when `CONFIG GET` may read it, lowers this further. @defaultValue 536870912
   */
  maxJobBytes?: number;
  /**
   * Job JSON characters per script call: a slot's jobs beyond this go in further calls, one after the other, so a
   * batch of large jobs never makes a request the server's client-query-buffer-limit (1 GB) would cut off.
   * @defaultValue 67108864
   */
  maxCallChars?: number;
  /** `MAXLEN ~` of every XADD to a stream (`outbox.stream.maxlen`); `undefined`: no trimming. */
  maxlen?: number | undefined;
  /** Called with the round-trip time of each batch, in seconds. */
  onRoundTrip?: (seconds: number) => void;
}

/** What one destination kind (a list, a stream) adds to the shared batch machinery: its script and its arguments. */
export interface MarkedScript {
  /** ioredis command name the script is defined under. */
  command: string;
  /** The script's file in ./lua/; publish-marks.lua and publish-deadline.lua are prepended to it. */
  file: string;
  /** What one item is called in messages: `job` (list) or `entry` (stream). */
  noun: string;
  /** Names the write in an outage message, e.g. `a push`. */
  write: string;
  /** Arguments after the marks' arguments, the same for every call (e.g. MAXLEN and field names). */
  headArgs: readonly (string | number)[];
  /** Arguments of one item after its key index, mark index, aggregate token and position. */
  itemArgs(event: ClaimedEvent, job: PlannedJob, priority: 'high' | 'low'): (string | number)[];
}

type ScriptCall = (numKeys: number, ...args: (string | number)[]) => Promise<(number | string)[]>;

/** A kind's script and the function that runs it. */
interface KindScript {
  script: MarkedScript;
  run: ScriptCall;
}

/**
 * The part of a Redis publisher that does not depend on the destination's type: plan a batch into per-slot calls of
 * a mark-guarded script (one script per destination kind), attribute each reply to its event, fence late calls with
 * a deadline on the server's clock, and respect the server's proto-max-bulk-len.
 *
 * Every script it runs takes `KEYS = [destinations..., marks...]` and `ARGV = [deadline, window, destinations, marks,
 * per mark: committed interval and position, ...headArgs, per item: destination index, mark index, aggregate token,
 * kind, epoch, seq, ...itemArgs]`, and returns one reply per item (1 written, 0 written by an earlier attempt, 2 held,
 * or the error text), then the server's clock in ms; past its deadline it replies `STALE ...`. The marks
 * (lua/publish-marks.lua) are one hash per outbox lane and destination, in the destination's slot: exactly once (G2)
 * with a fixed number of keys, whatever the traffic.
 *
 * Failures are attributed, so that one event can never stop the outbox:
 * - An error only one event causes is that event's `failed` outcome — the relay retries it with backoff, then marks it
 *   `failed` — and later events of its aggregate are `held`; every other aggregate of the batch is published in the
 *   same batch. Caught before Redis: an item that cannot be built, an item above `maxJobBytes` or the server's
 *   proto-max-bulk-len. Caught per item inside the script: WRONGTYPE and any other error reply of its writes.
 *   A whole call refused for a reason that is not an outage (CROSSSLOT, NOPERM on a key) is split into one call per
 *   item to find the event(s) to blame.
 * - The server's state (connection lost, timeout, LOADING, READONLY, BUSY, OOM when full, CLUSTERDOWN, ... see
 *   publish-errors.ts) throws `PublishUnavailableError`: the relay rolls back and backs off, counting no retry. Items
 *   already written are in their marks, so the next attempt records them as duplicates instead of writing again.
 *
 * The kind of destination is per event: the publisher's own (`kind`), or the one its `destination` header names
 * (destination-kind.ts). A batch may mix kinds; planBatch groups it by kind and slot, one script per group.
 */
export class MarkedBatchPublisher implements Publisher {
  readonly #redis: RedisClient;
  readonly #kind: DestinationKind;
  readonly #scripts: Record<DestinationKind, KindScript>;
  readonly #pattern: string;
  /** Which kind a `destination` header may pick for which key (the writer checks the same; rows can bypass it). */
  readonly #kinds: DestinationPolicy;
  readonly #priority: 'high' | 'low';
  readonly #windowMs: number;
  readonly #timeoutMs: number;
  readonly #maxJobBytes: number;
  readonly #maxCallChars: number;
  readonly #onRoundTrip: ((seconds: number) => void) | undefined;
  /** The server's proto-max-bulk-len: `undefined` until read, `null` when CONFIG is not available to us. */
  #serverMaxBulk: number | null | undefined;
  /** Below the size of an item the server refused ("invalid bulk length") when we could not read its limit. */
  #learnedMaxBulk = Number.POSITIVE_INFINITY;
  /**
   * Per cluster slot (0 on a standalone server): the server's clock minus `performance.now()`, in ms, never above the
   * truth (read as the reply arrives), so a deadline converted with it is never later than meant. Refreshed by every
   * script reply; absent until the first call to that slot asks the server.
   */
  readonly #clockOffsets = new Map<number, number>();

  /** `kind`: where events without a `destination` header go. */
  constructor(redis: RedisClient, options: MarkedBatchOptions, kind: DestinationKind) {
    this.#redis = redis;
    this.#kind = kind;
    const client = redis as unknown as Record<string, ScriptCall>;
    const define = (script: MarkedScript): KindScript => {
      if (!(script.command in redis)) redis.defineCommand(script.command, { lua: publishScript(script.file) });
      return {
        script,
        run: (numKeys, ...args) => (client[script.command] as ScriptCall).call(redis, numKeys, ...args),
      };
    };
    this.#scripts = { list: define(LIST_SCRIPT), stream: define(streamScript(options.maxlen)) };
    this.#pattern = options.queuePattern ?? 'jobqueue:{priority}_priority';
    this.#kinds = destinationPolicy({ queuePattern: this.#pattern, publisher: kind });
    this.#priority = options.defaultPriority ?? 'low';
    this.#windowMs = Math.max(1, Math.round(options.dedupWindowMs ?? 86_400_000));
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#maxJobBytes = options.maxJobBytes ?? REDIS_DEFAULT_MAX_BULK;
    this.#maxCallChars = options.maxCallChars ?? 64 * 1024 * 1024;
    this.#onRoundTrip = options.onRoundTrip;
  }

  get #cluster(): boolean {
    return isCluster(this.#redis);
  }

  /** The key an event goes to: its `queue`, else `queuePattern` with its priority. */
  keyFor(event: ClaimedEvent): string {
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
          listKeyFor: (event) => this.keyFor(event),
          kindOf: (event) => this.#kindOf(event),
          priorityOf: (event) => priorityOf(event, this.#priority),
          limit: await this.#jobLimit(),
        });
        // Slots in parallel; within a slot, calls in order (a group is one call unless its items are huge).
        await Promise.all(groups.map((jobs) => this.#runGroup(events, jobs, outcomes, deadline, options)));
      })(),
    );
    this.#onRoundTrip?.((performance.now() - started) / 1000);
    return outcomes;
  }

  /** The event's destination kind, or why it may not have it (see `DestinationPolicy.kindReason`). */
  #kindOf(event: ClaimedEvent): DestinationKind | { invalid: string } {
    const kind = destinationKindOf(event, this.#kind);
    if (typeof kind !== 'string') return kind;
    const reason = this.#kinds.kindReason(kind, event.queue);
    return reason === undefined ? kind : { invalid: `headers.destination: ${reason}` };
  }

  async #runGroup(
    events: readonly ClaimedEvent[],
    jobs: readonly PlannedJob[],
    outcomes: PublishOutcome[],
    deadline: number,
    options: PublishOptions,
  ): Promise<void> {
    const failed = new Set<string>();
    for (const chunk of chunkJobs(jobs, this.#maxCallChars)) {
      await this.#runCall(events, chunk, outcomes, failed, deadline, options);
    }
  }

  /** One script call; `failed` holds the aggregates that failed earlier in this group, whose later items are held. */
  async #runCall(
    events: readonly ClaimedEvent[],
    jobs: readonly PlannedJob[],
    outcomes: PublishOutcome[],
    failed: Set<string>,
    deadline: number,
    options: PublishOptions,
  ): Promise<void> {
    const live = jobs.filter((job) => {
      if (!failed.has(job.aggregate)) return true;
      outcomes[job.index] = { kind: 'held' };
      return false;
    });
    if (live.length === 0) return;
    let replies: (number | string)[];
    try {
      replies = await this.#call(events, live, deadline, options);
    } catch (err) {
      if (replyText(err)?.startsWith('STALE ') === true) {
        // Our clock estimate may be off (a clock step on either side): ask the server again next time.
        this.#clockOffsets.clear();
        throw new PublishUnavailableError(`Redis refused a late publish call: ${replyText(err)}`, { cause: err });
      }
      if (isBulkTooLarge(err)) {
        // The server closes the connection after this reply, so there is no splitting the call now. Remember that its
        // largest item is too large: from the next batch on it fails on its own, before it is sent.
        this.#learnedMaxBulk = Math.min(this.#learnedMaxBulk, Math.max(...live.map(largestArgument)) - 1);
      }
      if (isBulkTooLarge(err) || isOutage(err)) throw err;
      const [only] = live;
      if (live.length === 1 && only) {
        failed.add(only.aggregate);
        outcomes[only.index] = { kind: 'failed', error: (err as Error).message };
        return;
      }
      // Refused as a whole (CROSSSLOT, NOPERM on one key, ...): one call per item finds the event to blame.
      for (const job of live) await this.#runCall(events, [job], outcomes, failed, deadline, options);
      return;
    }
    live.forEach((job, j) => {
      const reply = replies[j];
      if (reply === 1) outcomes[job.index] = { kind: 'published' };
      else if (reply === 0) outcomes[job.index] = { kind: 'duplicate' };
      else if (reply === 2) outcomes[job.index] = { kind: 'held' };
      else {
        const error = String(reply);
        if (isOutageReply(error)) {
          throw new PublishUnavailableError(`Redis refused ${this.#scripts[job.kind].script.write}: ${error}`);
        }
        failed.add(job.aggregate);
        outcomes[job.index] = { kind: 'failed', error };
      }
    });
  }

  async #call(
    events: readonly ClaimedEvent[],
    jobs: readonly PlannedJob[],
    deadline: number,
    options: PublishOptions,
  ): Promise<(number | string)[]> {
    // planBatch groups by kind: every job of a call has the first one's.
    const { script, run } = this.#scripts[(jobs[0] as PlannedJob).kind];
    const targets = new Map<string, number>();
    const marks = new Map<string, number>();
    const markArgs: (string | number)[] = [];
    const items: (string | number)[] = [];
    for (const job of jobs) {
      const event = events[job.index] as ClaimedEvent;
      let target = targets.get(job.listKey);
      if (target === undefined) {
        target = targets.size + 1;
        targets.set(job.listKey, target);
      }
      const at = event.position;
      let mark = 0;
      if (at && options.outboxId) {
        const key = markKey(job.listKey, options.outboxId, at.lane);
        mark = marks.get(key) ?? 0;
        if (mark === 0) {
          mark = marks.size + 1;
          marks.set(key, mark);
          const cursor = options.cursors?.get(at.lane);
          markArgs.push(cursor?.interval ?? -1, cursor?.pos ?? -1);
        }
      }
      items.push(target, mark, job.aggregate, at?.kind ?? '-', at?.epoch ?? 0, at?.seq ?? 0);
      items.push(...script.itemArgs(event, job, priorityOf(event, this.#priority)));
    }
    const keys: string[] = [...targets.keys(), ...marks.keys()];
    const first = keys[0] as string;
    const slot = this.#cluster ? keySlot(first) : 0;
    let offset = this.#clockOffsets.get(slot);
    if (offset === undefined) offset = await this.#readClock(slot, first);
    // Whole milliseconds, rounded down: never later than the deadline meant.
    const serverDeadline = Number.isFinite(deadline) ? Math.max(1, Math.floor(deadline + offset)) : 0;
    const args: (string | number)[] = [serverDeadline, this.#windowMs, targets.size, marks.size, ...markArgs];
    args.push(...script.headArgs, ...items);
    const replies = await run(keys.length, ...keys, ...args);
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
    const noun = this.#scripts[this.#kind].script.noun;
    const limits: JobLimit[] = [
      {
        bytes: this.#maxJobBytes,
        describe: (n) => `${noun} of ${n} bytes exceeds outbox.max_job_bytes (${this.#maxJobBytes})`,
      },
    ];
    const server = this.#serverMaxBulk;
    if (server) {
      limits.push({
        bytes: server,
        describe: (n) => `${noun} of ${n} bytes exceeds the Redis server's proto-max-bulk-len (${server})`,
      });
    }
    const learned = this.#learnedMaxBulk;
    limits.push({
      bytes: learned,
      describe: (n) =>
        `${noun} of ${n} bytes is too large for the Redis server, which refused a call holding it ("invalid bulk ` +
        'length"); set outbox.max_job_bytes below its proto-max-bulk-len',
    });
    return limits.reduce((a, b) => (b.bytes < a.bytes ? b : a));
  }

  async #withTimeout<T>(work: Promise<T>): Promise<T> {
    try {
      return await withTimeout(
        work,
        this.#timeoutMs,
        () => new PublishUnavailableError(`Redis publish took longer than ${this.#timeoutMs} ms`),
      );
    } catch (err) {
      if (err instanceof PublishUnavailableError) throw err;
      throw new PublishUnavailableError(`Redis publish failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * A publish script's text: the high-water marks (lua/publish-marks.lua), the shared deadline check
 * (lua/publish-deadline.lua), then the script itself.
 */
function publishScript(file: string): string {
  const read = (name: string) => readFileSync(new URL(`./lua/${name}`, import.meta.url), 'utf8');
  return `${read('publish-marks.lua')}\n${read('publish-deadline.lua')}\n${read(file)}`;
}
