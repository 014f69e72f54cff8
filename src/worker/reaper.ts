import type { Logger } from '../logger.js';
import { mastersOf, type RedisClient } from '../redis.js';
import type { WorkerKeys } from './keys.js';
import type { WorkerScripts } from './scripts.js';

/** Where a worker's jobs go back to: its lists by priority, and the list of a job whose priority is none of them. */
export interface ReturnAddress {
  queues: readonly { priority: string; key: string }[];
  defaultPriority: string;
}

export interface ReaperDeps {
  redis: RedisClient;
  scripts: WorkerScripts;
  keys: WorkerKeys;
}

/** Jobs moved per script call: a dead worker's long list is returned in slices, never in one long script. */
const SLICE = 500;
/**
 * Every this many passes (and on the first) the reaper also SCANs for processing lists, which finds Go workers'
 * lists; the other passes visit only the Node workers in the registry. A SCAN walks the whole keyspace (with a
 * database store's hot cache, one key per job), and every worker process runs a reaper: go-redis-work-queue's own
 * reapers cover Go workers' lists every 5 s anyway.
 */
const SCAN_EVERY = 6;

/**
 * Return a dead worker's jobs (go-redis-work-queue's reaper rule: its heartbeat is gone). Returns how many moved,
 * or -1 when the worker is alive. Safe with any number of reapers: each job moves in one script, from the list it is
 * in, so it is never copied.
 */
export async function reapList(deps: ReaperDeps, workerId: string, address: ReturnAddress): Promise<number> {
  const keys = {
    processing: deps.keys.processing(workerId),
    heartbeat: deps.keys.heartbeat(workerId),
    registry: deps.keys.registry,
  };
  const defaultIndex = Math.max(
    0,
    address.queues.findIndex((q) => q.priority === address.defaultPriority),
  );
  let total = 0;
  for (;;) {
    const moved = await deps.scripts.reap(keys, address.queues, workerId, SLICE, defaultIndex);
    if (moved < 0) return total === 0 ? -1 : total;
    total += moved;
    if (moved < SLICE) return total;
  }
}

export interface ReaperOptions extends ReaperDeps {
  /** Where jobs of a worker with no return address go: a Go worker's, or one of ours that never registered. */
  fallback: ReturnAddress;
  intervalMs: number;
  logger: Logger;
  onReaped?(count: number): void;
}

/**
 * The reaper loop every worker process runs (as every go-redis-work-queue worker process does): each `reaper_interval`,
 * visit the registered Node workers (and every sixth pass all processing lists, SCAN `<prefix>worker:*:processing`),
 * and return the jobs of those without a heartbeat. A Node worker's jobs go back to the lists it consumed (its return address in
 * `<prefix>workers`); anyone else's go by `fallback`, as go-redis-work-queue's reaper sends them by its own config.
 */
export class Reaper {
  readonly #o: ReaperOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  #passes = 0;

  constructor(options: ReaperOptions) {
    this.#o = options;
  }

  start(): void {
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
  }

  /** One pass; returns the jobs returned. Never throws: a failure is logged and the next pass tries again. */
  async runOnce(): Promise<number> {
    try {
      const ids = await this.#candidates(this.#passes++ % SCAN_EVERY === 0);
      let total = 0;
      for (const id of ids) {
        const address = await this.#addressOf(id);
        const moved = await reapList(this.#o, id, address);
        if (moved > 0) {
          total += moved;
          this.#o.logger.warn({ workerId: id, jobs: moved }, 'returned the jobs of a dead worker to their queues');
        }
      }
      if (total > 0) this.#o.onReaped?.(total);
      return total;
    } catch (err) {
      this.#o.logger.warn({ err }, 'reaper pass failed; trying again next interval');
      return 0;
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = this.runOnce().then(() => this.#schedule());
    }, this.#o.intervalMs);
    this.#timer.unref();
  }

  async #candidates(scan: boolean): Promise<Set<string>> {
    const ids = new Set<string>();
    for (const node of scan ? mastersOf(this.#o.redis) : []) {
      let cursor = '0';
      do {
        const [next, found] = await node.scan(cursor, 'MATCH', this.#o.keys.processingPattern, 'COUNT', 1000);
        cursor = next;
        for (const key of found) {
          const id = this.#o.keys.workerOfProcessing(key);
          if (id) ids.add(id);
        }
      } while (cursor !== '0');
    }
    // Registered workers whose list is gone already: the script drops their address once they are dead.
    for (const id of await this.#o.redis.hkeys(this.#o.keys.registry)) ids.add(id);
    return ids;
  }

  async #addressOf(workerId: string): Promise<ReturnAddress> {
    const text = await this.#o.redis.hget(this.#o.keys.registry, workerId);
    if (text) {
      try {
        const a = JSON.parse(text) as { queues?: { priority: string; key: string }[]; default_priority?: string };
        if (Array.isArray(a.queues) && a.queues.length > 0) {
          return { queues: a.queues, defaultPriority: a.default_priority ?? this.#o.fallback.defaultPriority };
        }
      } catch {
        // A damaged address: the fallback is what go-redis-work-queue's reaper would use.
      }
    }
    return this.#o.fallback;
  }
}
