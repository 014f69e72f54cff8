import { isCluster, mastersOf, type RedisClient } from '../../redis.js';
import {
  type FailedGroup,
  type HeldAggregate,
  type OutboxTraffic,
  type OverviewBacklog,
  TrafficTally,
} from '../insights.js';
import type { DestinationRule } from '../inspect.js';
import type { TrafficCaps } from '../outbox-inspector.js';
import type { OutboxStatus } from '../types.js';
import { readEventRows } from './event-rows.js';
import type { OutboxKeys } from './keys.js';
import type { OutboxScripts } from './scripts.js';
import { decodeEvent, type StoredEventData } from './stored-event.js';

// The dashboard's read models (src/outbox/insights.ts) on the Redis outbox. Counts come from the status sets and the
// `delayed` set (O(1) or O(log n)); what needs each event's destination or error walks a status set in pipelined
// chunks, bounded where the set can be large (the published history), whole where it is the dead-letter set.

const CHUNK = 1000;
/** Newest published events (by write order) the traffic view looks at; it says when it stopped there. */
export const TRAFFIC_SCAN_CAP = 5000;
/** Pending (or failed) events whose destination the traffic view counts, per status. */
export const BACKLOG_SCAN_CAP = 5000;
/** Aggregates waiting for a retry that `heldAggregates` looks at. */
const HELD_SCAN_CAP = 5000;
/** Events the cleanup-due count looks at per status set. */
export const CLEANUP_DUE_CAP = 10_000;

type Row = (string | null)[];

async function hmget(redis: RedisClient, keys: OutboxKeys, ids: readonly string[], fields: string[]): Promise<Row[]> {
  if (ids.length === 0) return [];
  const pipeline = redis.pipeline();
  for (const id of ids) pipeline.hmget(keys.event(id), ...fields);
  return ((await pipeline.exec()) ?? []).map(([err, value]) => {
    if (err) throw err;
    return value as Row;
  });
}

async function serverMs(redis: RedisClient): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

/** Ids of a status set in write order (`asc`) or newest first, chunk by chunk, at most `cap`. */
async function* walk(redis: RedisClient, key: string, order: 'asc' | 'desc', cap: number): AsyncGenerator<string[]> {
  let seen = 0;
  let from = order === 'asc' ? '-inf' : '+inf';
  while (seen < cap) {
    const n = Math.min(CHUNK, cap - seen);
    const flat =
      order === 'asc'
        ? await redis.zrangebyscore(key, from, '+inf', 'WITHSCORES', 'LIMIT', 0, n)
        : await redis.zrevrangebyscore(key, from, '-inf', 'WITHSCORES', 'LIMIT', 0, n);
    if (flat.length === 0) return;
    const ids = flat.filter((_, i) => i % 2 === 0);
    seen += ids.length;
    from = `(${flat[flat.length - 1]}`;
    yield ids;
    if (ids.length < n) return;
  }
}

/** The list an event goes to; `undefined` when its data is unreadable (then it is counted nowhere). */
function queueOf(d: string | null, rule: DestinationRule): string | undefined {
  const e = decodeEvent(d);
  if ('unreadable' in e) return undefined;
  if (e.q !== undefined) return e.q;
  const p = e.h?.priority;
  return rule.queuePattern.replaceAll('{priority}', p === 'high' || p === 'low' ? p : rule.defaultPriority);
}

/**
 * The backlog as the relays see it. `due` is every pending event but the heads whose retry is not due yet (only an
 * aggregate's head ever waits for a retry; the events behind it count as due, as in Postgres). `retrying` counts the
 * heads in `delayed`: retries waiting for their backoff, or due and not claimed again yet.
 */
export async function redisOverviewBacklog(
  redis: RedisClient,
  keys: OutboxKeys,
  backlog: { pending: number; failed: number; oldestPendingAgeSeconds: number },
): Promise<OverviewBacklog> {
  const now = await serverMs(redis);
  const [waiting, retrying] = await Promise.all([
    redis.zcount(keys.delayed, `(${now}`, '+inf'),
    redis.zcard(keys.delayed),
  ]);
  return {
    pending: backlog.pending,
    due: Math.max(0, backlog.pending - waiting),
    retrying,
    failed: backlog.failed,
    oldestPendingAgeSeconds: backlog.oldestPendingAgeSeconds,
  };
}

/**
 * Published per bucket since `sinceMs` and, per destination, pending, failed and recently published counts. Reads
 * the newest `TRAFFIC_SCAN_CAP` published events and the oldest `BACKLOG_SCAN_CAP` pending and failed ones; `capped`
 * says a walk stopped at its cap (then the figures are a lower bound).
 */
export async function redisOutboxTraffic(
  redis: RedisClient,
  keys: OutboxKeys,
  scripts: OutboxScripts,
  rule: DestinationRule,
  sinceMs: number,
  bucketMs: number,
): Promise<OutboxTraffic & TrafficCaps> {
  const tally = new TrafficTally(sinceMs, bucketMs);
  const cappedBy = { published: false, pending: false, failed: false };
  let looked = 0;
  // `light` reads: a large payload's event is read without it (read-events.lua).
  for await (const ids of walk(redis, keys.published, 'desc', TRAFFIC_SCAN_CAP)) {
    looked += ids.length;
    for (const row of await readEventRows(redis, keys, scripts, ids, 'light')) {
      const queue = row?.published && Number(row.published) >= tally.start ? queueOf(row.data, rule) : undefined;
      if (queue !== undefined) tally.published(queue, Number(row?.published));
    }
  }
  if (looked >= TRAFFIC_SCAN_CAP) cappedBy.published = true;
  for (const status of ['pending', 'failed'] as const) {
    looked = 0;
    for await (const ids of walk(redis, keys[status], 'asc', BACKLOG_SCAN_CAP)) {
      looked += ids.length;
      for (const row of await readEventRows(redis, keys, scripts, ids, 'light')) {
        const queue = row ? queueOf(row.data, rule) : undefined;
        if (queue !== undefined) tally.backlog(queue, status);
      }
    }
    if (looked >= BACKLOG_SCAN_CAP) cappedBy[status] = true;
  }
  return { ...tally.report(), capped: Object.values(cappedBy).some(Boolean), cappedBy };
}

/**
 * Aggregates whose later events wait behind a retrying head: the relay's rule (an aggregate in `delayed` is not
 * claimed until its head's retry is due), with `waiting` >= 1, oldest blocker first.
 */
export async function redisHeldAggregates(
  redis: RedisClient,
  keys: OutboxKeys,
  scripts: OutboxScripts,
  limit: number,
): Promise<HeldAggregate[]> {
  const now = await serverMs(redis);
  const aggregates = await redis.zrangebyscore(keys.delayed, `(${now}`, '+inf', 'LIMIT', 0, HELD_SCAN_CAP);
  if (aggregates.length === 0) return [];
  const lists = redis.pipeline();
  for (const agg of aggregates) lists.lindex(keys.aggregateList(agg), 0).llen(keys.aggregateList(agg));
  const replies = ((await lists.exec()) ?? []).map(([err, v]) => {
    if (err) throw err;
    return v;
  });
  const heads: { id: string; waiting: number }[] = [];
  for (let i = 0; i < aggregates.length; i++) {
    const id = replies[2 * i] as string | null;
    const length = replies[2 * i + 1] as number;
    if (id && length > 1) heads.push({ id, waiting: length - 1 });
  }
  const rows = await readEventRows(
    redis,
    keys,
    scripts,
    heads.map((h) => h.id),
    'light',
  );
  const held: HeldAggregate[] = [];
  heads.forEach((h, i) => {
    const row = rows[i];
    if (row?.status !== 'pending' || !row.next || Number(row.next) <= now) return;
    const decoded = decodeEvent(row.data);
    // Only a readable event waits for a retry: an unreadable one fails at its first attempt.
    if ('unreadable' in decoded) return;
    const e: StoredEventData = decoded;
    held.push({
      aggregateType: e.at ?? '',
      aggregateId: e.ai,
      waiting: h.waiting,
      blocking: {
        id: h.id,
        seq: row.seq ?? '0',
        status: row.status as OutboxStatus,
        eventType: e.et,
        retryCount: Number(row.retries ?? 0),
        lastError: row.error,
        nextAttemptAt: new Date(Number(row.next)),
      },
    });
  });
  return held.sort((a, b) => Number(a.blocking.seq) - Number(b.blocking.seq)).slice(0, limit);
}

/** Dead events grouped by exact last error, largest first; walks the whole `failed` set (the dead letters). */
export async function redisFailedGroups(redis: RedisClient, keys: OutboxKeys, limit: number): Promise<FailedGroup[]> {
  const groups = new Map<string | null, FailedGroup & { firstSeq: number }>();
  let seq = 0;
  for await (const ids of walk(redis, keys.failed, 'asc', Number.POSITIVE_INFINITY)) {
    const rows = await hmget(redis, keys, ids, ['x', 'c']);
    ids.forEach((id, i) => {
      const [x, c] = rows[i] ?? [];
      const error = x ?? null;
      const at = new Date(Number(c ?? 0));
      const g = groups.get(error);
      seq++;
      if (!g) {
        groups.set(error, { error, count: 1, firstAt: at, lastAt: at, sampleIds: [id], firstSeq: seq });
        return;
      }
      g.count++;
      if (at < g.firstAt) g.firstAt = at;
      if (at > g.lastAt) g.lastAt = at;
      if (g.sampleIds.length < 5) g.sampleIds.push(id);
    });
  }
  return [...groups.values()]
    .sort((a, b) => b.count - a.count || a.firstSeq - b.firstSeq)
    .slice(0, limit)
    .map(({ firstSeq: _, ...g }) => g);
}

/** Published and failed events old enough for cleanup (`cleanup-2.lua`'s rule), at most `CLEANUP_DUE_CAP` per set. */
export async function redisCleanupDue(
  redis: RedisClient,
  keys: OutboxKeys,
  olderThanMs: number,
): Promise<{ due: number; capped: boolean }> {
  const cutoff = (await serverMs(redis)) - olderThanMs;
  let due = 0;
  let capped = false;
  for (const key of [keys.published, keys.failed]) {
    let n = 0;
    scan: for await (const ids of walk(redis, key, 'asc', CLEANUP_DUE_CAP)) {
      for (const [c, pa] of await hmget(redis, keys, ids, ['c', 'pa'])) {
        if (Number(c ?? 0) >= cutoff || (pa && Number(pa) >= cutoff)) break scan;
        n++;
      }
    }
    if (n >= CLEANUP_DUE_CAP) capped = true;
    due += n;
  }
  return { due, capped };
}

export interface RedisOutboxMemory {
  /** The outbox's fixed keys: `MEMORY USAGE` and entry count of each. */
  keys: { name: string; type: string; entries: number; bytes: number }[];
  /** Events by status, and their hashes' size estimated from a random sample (`MEMORY USAGE` of each). */
  events: { pending: number; published: number; failed: number; sampled: number; bytesPerEvent: number };
  /** The estimate for every event hash plus the fixed keys; aggregate lists (one per pending aggregate) are not in it. */
  estimatedBytes: number;
  /** `INFO memory` of the server (null on a cluster: see each master's). */
  usedMemoryBytes: number | null;
  maxmemoryBytes: number | null;
}

const SAMPLE = 20;

/** What the Redis outbox costs in memory now: `/tables` with `outbox.storage_type: redis`. */
export async function redisOutboxMemory(redis: RedisClient, keys: OutboxKeys): Promise<RedisOutboxMemory> {
  const fixed = [
    ['seq', 'string'],
    ['due', 'zset'],
    ['delayed', 'zset'],
    ['leases', 'zset'],
    ['owners', 'hash'],
    ['pending', 'zset'],
    ['published', 'zset'],
    ['failed', 'zset'],
  ] as const;
  const p = redis.pipeline();
  for (const [name, type] of fixed) {
    p.memory('USAGE', keys[name]);
    if (type === 'zset') p.zcard(keys[name]);
    else if (type === 'hash') p.hlen(keys[name]);
    else p.exists(keys[name]);
  }
  for (const status of ['pending', 'published', 'failed'] as const) p.zrandmember(keys[status], SAMPLE);
  const replies = ((await p.exec()) ?? []).map(([err, v]) => {
    if (err) throw err;
    return v;
  });
  const out = fixed.map(([name, type], i) => ({
    name: keys[name],
    type,
    entries: Number(replies[2 * i + 1] ?? 0),
    bytes: Number(replies[2 * i] ?? 0),
  }));
  const byName = new Map(fixed.map(([name], i) => [name, out[i]?.entries ?? 0]));
  const sample = replies.slice(2 * fixed.length).flatMap((ids) => (ids as string[] | null) ?? []);
  let sampled = 0;
  let sampledBytes = 0;
  if (sample.length > 0) {
    const m = redis.pipeline();
    for (const id of sample) m.memory('USAGE', keys.event(id));
    for (const [err, v] of (await m.exec()) ?? []) {
      if (err || v === null) continue;
      sampled++;
      sampledBytes += Number(v);
    }
  }
  const bytesPerEvent = sampled > 0 ? Math.round(sampledBytes / sampled) : 0;
  const events = {
    pending: byName.get('pending') ?? 0,
    published: byName.get('published') ?? 0,
    failed: byName.get('failed') ?? 0,
    sampled,
    bytesPerEvent,
  };
  const total = events.pending + events.published + events.failed;
  let usedMemoryBytes: number | null = null;
  let maxmemoryBytes: number | null = null;
  if (!isCluster(redis)) {
    const info = await (mastersOf(redis)[0] as RedisClient).info('memory');
    const field = (name: string) => {
      const m = new RegExp(`^${name}:(\\d+)`, 'm').exec(info);
      return m ? Number(m[1]) : null;
    };
    usedMemoryBytes = field('used_memory');
    maxmemoryBytes = field('maxmemory');
  }
  return {
    keys: out,
    events,
    estimatedBytes: total * bytesPerEvent + out.reduce((sum, k) => sum + k.bytes, 0),
    usedMemoryBytes,
    maxmemoryBytes,
  };
}

/** Relay processes running now: each holds one subscription to the doorbell (doorbell.ts), on some master. */
export async function redisRelaysAwake(redis: RedisClient, keys: OutboxKeys): Promise<number> {
  let n = 0;
  for (const node of mastersOf(redis)) {
    const reply = (await node.pubsub('NUMSUB', keys.doorbell)) as [string, number | string];
    n += Number(reply[1] ?? 0);
  }
  return n;
}
