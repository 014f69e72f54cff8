import type { ClaimedEvent, PublishOutcome } from '../outbox/types.js';
import { dedupMarkerKey, keySlot } from './hash-tag.js';
import { jobJson } from './job.js';

/** One job ready for the script. */
export interface PlannedJob {
  /** Index into the claimed batch. */
  index: number;
  listKey: string;
  marker: string;
  /** Aggregate identity; the script holds later jobs of an aggregate after one fails. */
  aggregate: string;
  json: string;
}

/** The largest job Redis will take, and how to say why a job was refused. */
export interface JobLimit {
  bytes: number;
  /** The failure text of a job of `size` bytes above the limit. */
  describe(size: number): string;
}

export interface PlanOptions {
  /** Group by cluster slot (keys of one script call must share one); a standalone server takes one group. */
  cluster: boolean;
  listKeyFor(event: ClaimedEvent): string;
  priorityOf(event: ClaimedEvent): 'high' | 'low';
  limit: JobLimit;
}

/**
 * Split a claimed batch into per-slot groups of ready jobs, in batch order, and settle in `outcomes` what needs no
 * Redis: an event whose job cannot be built, or is larger than `limit`, fails here (sending it would break the whole
 * call: Redis answers an oversized argument by closing the connection). After such a failure the later events of its
 * aggregate are held. An aggregate whose events span two slots is cut at the first switch (the rest is held, pending
 * for the next batch), so a failure in one group can never let a later event of it overtake.
 */
export function planBatch(
  events: readonly ClaimedEvent[],
  outcomes: PublishOutcome[],
  options: PlanOptions,
): PlannedJob[][] {
  const groups = new Map<number, PlannedJob[]>();
  const slotOf = new Map<string, number>();
  const blocked = new Set<string>();
  events.forEach((event, index) => {
    const aggregate = `${event.aggregateType}\u0000${event.aggregateId}`;
    if (blocked.has(aggregate)) {
      outcomes[index] = { kind: 'held' };
      return;
    }
    const listKey = options.listKeyFor(event);
    const slot = options.cluster ? keySlot(listKey) : 0;
    const first = slotOf.get(aggregate);
    if (first !== undefined && first !== slot) {
      blocked.add(aggregate);
      outcomes[index] = { kind: 'held' };
      return;
    }
    let json: string;
    try {
      json = jobJson(event, options.priorityOf(event));
    } catch (err) {
      blocked.add(aggregate);
      outcomes[index] = { kind: 'failed', error: `job cannot be built: ${(err as Error).message}` };
      return;
    }
    const marker = dedupMarkerKey(listKey, event.id);
    const size = oversize(json, marker, options.limit.bytes);
    if (size !== undefined) {
      blocked.add(aggregate);
      outcomes[index] = { kind: 'failed', error: options.limit.describe(size) };
      return;
    }
    slotOf.set(aggregate, slot);
    let group = groups.get(slot);
    if (!group) {
      group = [];
      groups.set(slot, group);
    }
    group.push({ index, listKey, marker, aggregate, json });
  });
  return [...groups.values()];
}

/** The UTF-8 size of the largest argument a job adds to a call, when it is above `limit`. */
function oversize(json: string, marker: string, limit: number): number | undefined {
  // UTF-8 takes at most 3 bytes per UTF-16 unit: most jobs are cleared without encoding them.
  if (Math.max(json.length, marker.length) * 3 <= limit) return undefined;
  const size = largestArgument({ json, marker });
  return size > limit ? size : undefined;
}

/** Bytes of the largest argument (job JSON or marker key) a job sends. */
export function largestArgument(job: Pick<PlannedJob, 'json' | 'marker'>): number {
  return Math.max(Buffer.byteLength(job.json, 'utf8'), Buffer.byteLength(job.marker, 'utf8'));
}

/**
 * Consecutive runs of `jobs` of at most `maxChars` JSON characters each (at least one job per run), so a batch of
 * large jobs never builds one request beyond the server's query buffer limit (client-query-buffer-limit, 1 GB by
 * default, closes the connection).
 */
export function chunkJobs(jobs: readonly PlannedJob[], maxChars: number): PlannedJob[][] {
  const chunks: PlannedJob[][] = [];
  let current: PlannedJob[] = [];
  let chars = 0;
  for (const job of jobs) {
    if (current.length > 0 && chars + job.json.length > maxChars) {
      chunks.push(current);
      current = [];
      chars = 0;
    }
    current.push(job);
    chars += job.json.length;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}
