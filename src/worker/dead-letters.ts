import { DeadLetterNotFoundError } from '../errors.js';
import { mastersOf, type RedisClient } from '../redis.js';
import { type DeadLetter, readDeadEntry, replayText, streamFields } from './job.js';
import type { WorkerKeys } from './keys.js';
import type { ReturnAddress } from './reaper.js';
import { workerScripts } from './scripts.js';

/**
 * What operators see of the workers (the dashboard's Workers screen, `/api/v1/exactly-once/workers`): the workers
 * alive now (their heartbeats, Node's and Go's), processing lists with no heartbeat (a dead worker's jobs, until the
 * next reaper pass), and the dead-letter list, with replay.
 */
export interface WorkerStatus {
  id: string;
  /** `node` for ours; `go` for a go-redis-work-queue worker (its heartbeat holds the job it runs). */
  runtime: 'node' | 'go';
  /** The heartbeat's own fields (host, pid, queues, counters) for a Node worker; `{ job }` for a Go worker. */
  info: Record<string, unknown>;
  /** Milliseconds until the heartbeat lapses. */
  ttlMs: number;
  /** Jobs in its processing list now. */
  processing: number;
}

export interface WorkersOverview {
  workers: WorkerStatus[];
  /** Processing lists whose worker has no heartbeat: the reaper returns their jobs on its next pass. */
  orphaned: { id: string; jobs: number }[];
  deadLetters: number;
  completed: number;
}

async function scanAll(redis: RedisClient, pattern: string): Promise<string[]> {
  const out: string[] = [];
  for (const node of mastersOf(redis)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      cursor = next;
      out.push(...keys);
    } while (cursor !== '0');
  }
  return out;
}

/** The workers of `keys.prefix` now. */
export async function workersOverview(redis: RedisClient, keys: WorkerKeys): Promise<WorkersOverview> {
  const [beatKeys, listKeys] = await Promise.all([
    scanAll(redis, keys.heartbeatPattern),
    scanAll(redis, keys.processingPattern),
  ]);
  const workers: WorkerStatus[] = [];
  for (const key of beatKeys) {
    const id = keys.workerOfHeartbeat(key);
    if (!id) continue;
    const [value, ttl, processing] = await Promise.all([
      redis.get(key),
      redis.pttl(key),
      redis.llen(keys.processing(id)),
    ]);
    if (value === null) continue;
    let info: Record<string, unknown> = { job: value };
    let runtime: 'node' | 'go' = 'go';
    try {
      const parsed = JSON.parse(value) as Record<string, unknown>;
      if (parsed.runtime === 'node') {
        info = parsed;
        runtime = 'node';
      }
    } catch {
      // Not JSON: nothing of ours; shown as it is.
    }
    workers.push({ id, runtime, info, ttlMs: ttl, processing });
  }
  const alive = new Set(workers.map((w) => w.id));
  const orphaned: { id: string; jobs: number }[] = [];
  for (const key of listKeys) {
    const id = keys.workerOfProcessing(key);
    if (id && !alive.has(id)) orphaned.push({ id, jobs: await redis.llen(key) });
  }
  workers.sort((a, b) => a.id.localeCompare(b.id));
  const [deadLetters, completed] = await Promise.all([redis.llen(keys.deadLetter), redis.llen(keys.completed)]);
  return { workers, orphaned, deadLetters, completed };
}

/** The newest `limit` dead-letter entries, newest first. */
export async function listDeadLetters(
  redis: RedisClient,
  keys: WorkerKeys,
  limit: number,
): Promise<{ total: number; entries: DeadLetter[] }> {
  const [total, raw] = await Promise.all([redis.llen(keys.deadLetter), redis.lrange(keys.deadLetter, 0, limit - 1)]);
  return { total, entries: raw.map(readDeadEntry) };
}

/**
 * Send dead jobs back: each to the list or stream it died in (`dead_from`), else to its priority's list of `fallback`,
 * with `retries` 0 and the dead-letter fields removed; out of the dead-letter list in the same script, so a replay
 * clicked twice sends one copy. `ids` selects entries by job id (every entry of that id); `all` takes every entry.
 */
export async function replayDeadLetters(
  redis: RedisClient,
  keys: WorkerKeys,
  fallback: ReturnAddress,
  selection: { ids: readonly string[] } | { all: true },
): Promise<{ replayed: number; missing: string[] }> {
  const scripts = workerScripts(redis);
  const entries = (await redis.lrange(keys.deadLetter, 0, -1)).map(readDeadEntry);
  const wanted = 'all' in selection ? undefined : new Set(selection.ids);
  const found = new Set<string>();
  let replayed = 0;
  for (const entry of entries) {
    if (wanted && !wanted.has(entry.id)) continue;
    found.add(entry.id);
    const text = replayText(entry.raw);
    if (entry.kind === 'stream' && entry.from) {
      replayed += await scripts.replayStream(keys.deadLetter, entry.from, entry.raw, streamFields(text));
      continue;
    }
    const to =
      entry.from ||
      (
        fallback.queues.find((q) => q.priority === entry.priority) ??
        fallback.queues.find((q) => q.priority === fallback.defaultPriority) ??
        fallback.queues[0]
      )?.key;
    if (!to) continue;
    replayed += await scripts.move(keys.deadLetter, to, entry.raw, text, 'back');
  }
  const missing = wanted ? [...wanted].filter((id) => !found.has(id)) : [];
  if (wanted && replayed === 0 && missing.length > 0) throw new DeadLetterNotFoundError(missing[0] as string);
  return { replayed, missing };
}
