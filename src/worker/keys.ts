import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/**
 * The worker's Redis keys, named as go-redis-work-queue names them (its `processing_list_pattern`,
 * `heartbeat_key_pattern`, `completed_list`, `dead_letter_list` with the default `jobqueue:` prefix), so its reaper
 * and ours read each other's processing lists and heartbeats. `workers` is ours alone: the return address of each
 * live Node worker, which a reaper needs when the dead worker consumed lists other than its own.
 */
export interface WorkerKeys {
  readonly prefix: string;
  processing(workerId: string): string;
  heartbeat(workerId: string): string;
  readonly completed: string;
  readonly deadLetter: string;
  readonly registry: string;
  /** SCAN pattern of every processing list (go-redis-work-queue's reaper scans `jobqueue:worker:*:processing`). */
  readonly processingPattern: string;
  /** SCAN pattern of every heartbeat. */
  readonly heartbeatPattern: string;
  /** The worker id in a processing list's key, or undefined when the key is not one. */
  workerOfProcessing(key: string): string | undefined;
  workerOfHeartbeat(key: string): string | undefined;
}

export function workerKeys(prefix: string): WorkerKeys {
  const processingHead = `${prefix}worker:`;
  const heartbeatHead = `${prefix}processing:worker:`;
  const idBetween = (key: string, head: string, tail: string) => {
    if (!key.startsWith(head) || !key.endsWith(tail)) return undefined;
    const id = key.slice(head.length, key.length - tail.length);
    return id === '' || id.includes(':') ? undefined : id;
  };
  return {
    prefix,
    processing: (id) => `${processingHead}${id}:processing`,
    heartbeat: (id) => `${heartbeatHead}${id}`,
    completed: `${prefix}completed`,
    deadLetter: `${prefix}dead_letter`,
    registry: `${prefix}workers`,
    processingPattern: `${processingHead}*:processing`,
    heartbeatPattern: `${heartbeatHead}*`,
    workerOfProcessing: (key) => idBetween(key, processingHead, ':processing'),
    workerOfHeartbeat: (key) => idBetween(key, heartbeatHead, ''),
  };
}

/**
 * A worker id as go-redis-work-queue builds one (`<host>-<pid>-<start>-<random>`): unique per process start, and free
 * of `:`, because its reaper reads the id as the third `:`-separated part of the processing list's key.
 */
export function newWorkerId(): string {
  const host = hostname().replace(/[^\w.-]/g, '_') || 'host';
  return `${host}-${process.pid}-${Date.now()}-${randomBytes(2).toString('hex')}`;
}

/** The lists of a `{priority}` pattern, in priority order; a name without `{priority}` is one list for every priority. */
export function queueLists(pattern: string, priorities: readonly string[]): { priority: string; key: string }[] {
  if (!pattern.includes('{priority}')) return priorities.map((priority) => ({ priority, key: pattern }));
  return priorities.map((priority) => ({ priority, key: pattern.replaceAll('{priority}', priority) }));
}
