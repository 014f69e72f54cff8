import type { Redis } from 'ioredis';
import type { RedisClient } from '../redis.js';
import { deadEntry, parseJob, withRetries } from './job.js';
import type { WorkerKeys } from './keys.js';
import { reapList } from './reaper.js';
import type { WorkerScripts } from './scripts.js';
import type { Delivery, JobSource } from './source.js';

export interface ListSourceOptions {
  redis: RedisClient;
  /** A connection of this source's own: a blocking pop holds it. */
  blocking: Redis | RedisClient;
  scripts: WorkerScripts;
  keys: WorkerKeys;
  workerId: string;
  /** Highest priority first. */
  queues: readonly { priority: string; key: string }[];
  defaultPriority: string;
  completedMax: number;
  blockTimeoutMs: number;
}

/**
 * go-redis-work-queue lists: a reliable pop (the job moves into this worker's processing list in the same command),
 * priority order, and acknowledgement by `LREM`. Non-blocking pops go through one script that takes up to `max` jobs,
 * highest priority first; only when every queue is empty does the source block, with `BLMOVE` on one queue at a time
 * (rotating, so an idle worker wakes for any queue within `block_timeout`), since Redis cannot block on several lists
 * and move atomically.
 */
export class ListSource implements JobSource {
  readonly kind = 'list';
  readonly #o: ListSourceOptions;
  readonly #processing: string;
  /** Each list once, in priority order (a name without `{priority}` serves every priority). */
  readonly #lists: string[];
  #rotation = 0;

  constructor(options: ListSourceOptions) {
    this.#o = options;
    this.#processing = options.keys.processing(options.workerId);
    this.#lists = [...new Set(options.queues.map((q) => q.key))];
  }

  get describes(): Record<string, unknown> {
    return { queues: this.#lists, processing: this.#processing };
  }

  /** The return address: where a reaper sends this worker's jobs should it die (its lists, by priority). */
  async open(): Promise<void> {
    const address = { queues: this.#o.queues, default_priority: this.#o.defaultPriority };
    await this.#o.redis.hset(this.#o.keys.registry, this.#o.workerId, JSON.stringify(address));
  }

  async take(max: number): Promise<Delivery[]> {
    const flat = await this.#o.scripts.pop(this.#processing, this.#lists, max);
    const out: Delivery[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      out.push(this.#delivery(String(flat[i + 1]), this.#lists[Number(flat[i])] as string));
    }
    if (out.length > 0) return out;
    const queue = this.#lists[this.#rotation++ % this.#lists.length] as string;
    const raw = await this.#o.blocking.blmove(queue, this.#processing, 'RIGHT', 'LEFT', this.#o.blockTimeoutMs / 1000);
    return raw === null ? [] : [this.#delivery(raw, queue)];
  }

  async complete(delivery: Delivery): Promise<void> {
    await this.#o.scripts.complete(this.#processing, this.#o.keys.completed, delivery.raw, this.#o.completedMax);
  }

  /** Behind the jobs waiting in the list it came from, as go-redis-work-queue requeues (LPUSH). */
  async retry(delivery: Delivery, retries: number): Promise<void> {
    await this.#o.scripts.move(
      this.#processing,
      delivery.from,
      delivery.raw,
      withRetries(delivery.raw, retries),
      'back',
    );
  }

  async dead(delivery: Delivery, error: string, retries: number): Promise<void> {
    const entry = deadEntry(delivery.raw, { error, from: delivery.from, kind: 'list', retries });
    await this.#o.scripts.move(this.#processing, this.#o.keys.deadLetter, delivery.raw, entry, 'back');
  }

  /**
   * Called once no job of this worker runs any more and its heartbeat is deleted: whatever is left in its processing
   * list (a job whose acknowledgement failed) goes back to its queue now, by the reaper's own rule.
   */
  async close(): Promise<void> {
    await reapList({ redis: this.#o.redis, scripts: this.#o.scripts, keys: this.#o.keys }, this.#o.workerId, {
      queues: this.#o.queues,
      defaultPriority: this.#o.defaultPriority,
    });
  }

  #delivery(raw: string, from: string): Delivery {
    return { raw, from, parsed: parseJob(raw) };
  }
}
