import type { ClaimedEvent, PublishOutcome } from '../outbox/types.js';
import type { DestinationKind } from './destination-kind.js';
import { keySlot } from './hash-tag.js';
import { jobJson } from './job.js';

/** One job ready for the script. */
export interface PlannedJob {
  /** Index into the claimed batch. */
  index: number;
  /** List or stream: which script writes it. */
  kind: DestinationKind;
  listKey: string;
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
  /** The event's destination kind, or why it has none (its `destination` header holds something else). */
  kindOf(event: ClaimedEvent): DestinationKind | { invalid: string };
  priorityOf(event: ClaimedEvent): 'high' | 'low';
  limit: JobLimit;
}

/**
 * Split a claimed batch into groups of ready jobs, one per destination kind and slot, in batch order, and settle in
 * `outcomes` what needs no Redis: an event whose job cannot be built, is larger than `limit`, or names no valid kind
 * fails here (sending an oversized one would break the whole call: Redis answers an oversized argument by closing the
 * connection). After such a failure the later events of its aggregate are held. Groups run in parallel, so an
 * aggregate whose events span two groups (two slots, or a list and a stream) is cut at the first switch (the rest is
 * held, pending for the next batch): a failure in one group can never let a later event of it overtake.
 */
export function planBatch(
  events: readonly ClaimedEvent[],
  outcomes: PublishOutcome[],
  options: PlanOptions,
): PlannedJob[][] {
  const groups = new Map<string, PlannedJob[]>();
  const groupOf = new Map<string, string>();
  const blocked = new Set<string>();
  events.forEach((event, index) => {
    const aggregate = `${event.aggregateType}\u0000${event.aggregateId}`;
    if (blocked.has(aggregate)) {
      outcomes[index] = { kind: 'held' };
      return;
    }
    const kind = options.kindOf(event);
    if (typeof kind === 'object') {
      // Only plain SQL can store such a row (storeInOutbox refuses it), and no retry can fix it.
      blocked.add(aggregate);
      outcomes[index] = { kind: 'failed', error: kind.invalid, permanent: true };
      return;
    }
    const listKey = options.listKeyFor(event);
    const slot = options.cluster ? keySlot(listKey) : 0;
    const group = `${kind}:${slot}`;
    const first = groupOf.get(aggregate);
    if (first !== undefined && first !== group) {
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
    const size = oversize(json, listKey, options.limit.bytes);
    if (size !== undefined) {
      blocked.add(aggregate);
      outcomes[index] = { kind: 'failed', error: options.limit.describe(size) };
      return;
    }
    groupOf.set(aggregate, group);
    let jobs = groups.get(group);
    if (!jobs) {
      jobs = [];
      groups.set(group, jobs);
    }
    jobs.push({ index, kind, listKey, aggregate, json });
  });
  return [...groups.values()];
}

/** The UTF-8 size of the largest argument a job adds to a call, when it is above `limit`. */
function oversize(json: string, listKey: string, limit: number): number | undefined {
  // UTF-8 takes at most 3 bytes per UTF-16 unit: most jobs are cleared without encoding them.
  if (Math.max(json.length, listKey.length) * 3 <= limit) return undefined;
  const size = largestArgument({ json, listKey });
  return size > limit ? size : undefined;
}

/** Bytes of the largest argument (job JSON or destination key) a job sends. */
export function largestArgument(job: Pick<PlannedJob, 'json' | 'listKey'>): number {
  return Math.max(Buffer.byteLength(job.json, 'utf8'), Buffer.byteLength(job.listKey, 'utf8'));
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
