import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';
import { PublishUnavailableError } from '../errors.js';
import type { ClaimedEvent, Publisher, PublishOutcome } from '../outbox/types.js';
import { dedupMarkerKey, hashTag } from './hash-tag.js';
import { jobJson, priorityOf } from './job.js';

const PUBLISH_JOBS_LUA = readFileSync(new URL('./lua/publish-jobs.lua', import.meta.url), 'utf8');

export interface RedisListPublisherOptions {
  /** List key; `{priority}` becomes `high` or `low`. @defaultValue "jobqueue:{priority}_priority" */
  queuePattern?: string;
  /** @defaultValue "low" */
  defaultPriority?: 'high' | 'low';
  /** Dedup marker lifetime in ms. @defaultValue 24h */
  dedupWindowMs?: number;
  /** A batch slower than this throws (the relay retries it; markers make the retry safe). @defaultValue 5000 */
  timeoutMs?: number;
  /** Called with the round-trip time of each script call, in seconds. */
  onRoundTrip?: (seconds: number) => void;
}

type ScriptClient = (Redis | Cluster) & {
  eoPublishJobs(numKeys: number, ...args: (string | number)[]): Promise<(number | string)[]>;
};

/**
 * The default publisher: LPUSHes one go-redis-work-queue job per event onto a Redis list (consumers pop from the
 * right, so each list is FIFO), guarded by a per-event dedup marker in the same Lua script.
 */
export class RedisListPublisher implements Publisher {
  readonly #redis: ScriptClient;
  readonly #pattern: string;
  readonly #priority: 'high' | 'low';
  readonly #ttlSeconds: number;
  readonly #timeoutMs: number;
  readonly #onRoundTrip: ((seconds: number) => void) | undefined;

  constructor(redis: Redis | Cluster, options: RedisListPublisherOptions = {}) {
    if (!('eoPublishJobs' in redis)) redis.defineCommand('eoPublishJobs', { lua: PUBLISH_JOBS_LUA });
    this.#redis = redis as ScriptClient;
    this.#pattern = options.queuePattern ?? 'jobqueue:{priority}_priority';
    this.#priority = options.defaultPriority ?? 'low';
    this.#ttlSeconds = Math.max(1, Math.ceil((options.dedupWindowMs ?? 86_400_000) / 1000));
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#onRoundTrip = options.onRoundTrip;
  }

  /** The list an event goes to. */
  listKeyFor(event: ClaimedEvent): string {
    return event.queue ?? this.#pattern.replaceAll('{priority}', priorityOf(event, this.#priority));
  }

  async publish(events: readonly ClaimedEvent[]): Promise<PublishOutcome[]> {
    const outcomes: PublishOutcome[] = new Array(events.length);
    const groups = this.#group(events, outcomes);
    const started = performance.now();
    const results = await this.#withTimeout(Promise.all(groups.map((g) => this.#call(g, events))));
    this.#onRoundTrip?.((performance.now() - started) / 1000);
    groups.forEach((group, g) => {
      const replies = results[g] as (number | string)[];
      group.indexes.forEach((eventIndex, j) => {
        const reply = replies[j];
        outcomes[eventIndex] =
          reply === 1
            ? { kind: 'published' }
            : reply === 0
              ? { kind: 'duplicate' }
              : reply === 2
                ? { kind: 'held' }
                : { kind: 'failed', error: String(reply) };
      });
    });
    return outcomes;
  }

  /**
   * One script call per hash tag. A standalone server takes the whole batch in one call; on a cluster, keys of one
   * call must share a slot, and an aggregate whose events span two groups is cut at the first switch (the rest stays
   * pending for the next batch) so a failure in one group can never let a later event of it overtake.
   */
  #group(events: readonly ClaimedEvent[], outcomes: PublishOutcome[]): Group[] {
    const cluster = (this.#redis as { isCluster?: boolean }).isCluster === true;
    const groups = new Map<string, Group>();
    const aggregateGroup = new Map<string, string>();
    const cut = new Set<string>();
    events.forEach((event, i) => {
      const listKey = this.listKeyFor(event);
      const tag = cluster ? hashTag(listKey) : '';
      const agg = `${event.aggregateType}\u0000${event.aggregateId}`;
      const first = aggregateGroup.get(agg);
      if (cut.has(agg) || (first !== undefined && first !== tag)) {
        cut.add(agg);
        outcomes[i] = { kind: 'held' };
        return;
      }
      aggregateGroup.set(agg, tag);
      let group = groups.get(tag);
      if (!group) {
        group = { lists: new Map(), indexes: [], listKeys: [] };
        groups.set(tag, group);
      }
      if (!group.lists.has(listKey)) group.lists.set(listKey, group.lists.size + 1);
      group.indexes.push(i);
      group.listKeys.push(listKey);
    });
    return [...groups.values()];
  }

  #call(group: Group, events: readonly ClaimedEvent[]): Promise<(number | string)[]> {
    const keys: string[] = [...group.lists.keys()];
    const args: (string | number)[] = [this.#ttlSeconds, group.lists.size];
    group.indexes.forEach((eventIndex, j) => {
      const event = events[eventIndex] as ClaimedEvent;
      const listKey = group.listKeys[j] as string;
      keys.push(dedupMarkerKey(listKey, event.id));
      args.push(group.lists.get(listKey) as number, `${event.aggregateType}\u0000${event.aggregateId}`);
      args.push(jobJson(event, priorityOf(event, this.#priority)));
    });
    return this.#redis.eoPublishJobs(keys.length, ...keys, ...args);
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

interface Group {
  /** list key -> 1-based index among this call's KEYS */
  lists: Map<string, number>;
  /** indexes into the batch, in order */
  indexes: number[];
  /** list key per entry of `indexes` */
  listKeys: string[];
}
