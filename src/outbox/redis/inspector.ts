import type { Config } from '../../config/load-config.js';
import { InvalidParameterError } from '../../errors.js';
import type { RedisClient } from '../../redis.js';
import { UUID_RE } from '../ids.js';
import type { FailedGroup, HeldAggregate, OutboxTraffic, OverviewBacklog } from '../insights.js';
import {
  type DestinationRule,
  encodeCursor,
  type ListOutboxOptions,
  type OutboxBacklog,
  type OutboxPage,
  pageOptions,
  type RetryResult,
  type RetrySelection,
  validateIds,
} from '../inspect.js';
import type { OutboxInspector, TrafficCaps } from '../outbox-inspector.js';
import type { OutboxEvent, OutboxStatus } from '../types.js';
import { readEventRows, rowAggregate, rowToEvent } from './event-rows.js';
import {
  type RedisOutboxMemory,
  redisCleanupDue,
  redisFailedGroups,
  redisHeldAggregates,
  redisOutboxMemory,
  redisOutboxTraffic,
  redisOverviewBacklog,
  redisRelaysAwake,
} from './insights.js';
import { type OutboxKeys, outboxKeys } from './keys.js';
import { type OutboxScripts, outboxScripts } from './scripts.js';

/**
 * List options the Redis outbox serves; any other (a filter) is refused naming it. `destinations` is how the `queue`
 * filter reads events without a queue, not a filter of its own; `payload` picks previews.
 */
const SUPPORTED = new Set(['status', 'limit', 'cursor', 'order', 'destinations', 'payload']);
const CHUNK = 1000;
/** Events per replay script call (lua/replay-5.lua). */
const REPLAY_CHUNK = 250;

/**
 * Operators' view of the Redis outbox (`outbox.storage_type: redis`): listing in write order with the same cursors as
 * the Postgres outbox, backlog counts, replay and retention cleanup, and the dashboard's reads (insights.ts). See
 * keys.ts for the layout.
 */
export class RedisOutboxInspector implements OutboxInspector {
  readonly storage = 'redis' as const;
  readonly #redis: RedisClient;
  readonly #keys: OutboxKeys;
  readonly #scripts: OutboxScripts;

  constructor(redis: RedisClient, outbox: Pick<Config['outbox'], 'redis'>) {
    this.#redis = redis;
    this.#keys = outboxKeys(outbox.redis.keyPrefix);
    this.#scripts = outboxScripts(redis);
  }

  async list(options: ListOutboxOptions = {}): Promise<OutboxPage> {
    for (const [field, value] of Object.entries(options)) {
      if (value !== undefined && !SUPPORTED.has(field)) {
        const name = field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
        throw new InvalidParameterError(
          name,
          'is not supported with outbox.storage_type: redis (it lists by status, order, limit and cursor only)',
        );
      }
    }
    const { status, limit, order } = pageOptions(options);
    const after = options.cursor === undefined ? undefined : decodeCursor(options.cursor);
    const sets = status ? [this.#setOf(status)] : [this.#keys.pending, this.#keys.published, this.#keys.failed];
    // Each status set is ordered by seq: take the next limit+1 of each and merge (one more tells if a page follows).
    const ranges = await Promise.all(
      sets.map((key) =>
        order === 'asc'
          ? this.#redis.zrangebyscore(key, `(${after ?? 0}`, '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
          : this.#redis.zrevrangebyscore(
              key,
              after === undefined ? '+inf' : `(${after}`,
              '-inf',
              'WITHSCORES',
              'LIMIT',
              0,
              limit + 1,
            ),
      ),
    );
    const found: { id: string; seq: number }[] = [];
    for (const flat of ranges) {
      for (let i = 0; i < flat.length; i += 2) found.push({ id: flat[i] as string, seq: Number(flat[i + 1]) });
    }
    found.sort((a, b) => (order === 'asc' ? a.seq - b.seq : b.seq - a.seq));
    const window = found.slice(0, limit + 1);
    const events = await this.#read(
      window.slice(0, limit).map((f) => f.id),
      options.payload === 'preview',
    );
    const last = window[limit - 1];
    return {
      events: events.filter((e): e is OutboxEvent => e !== undefined),
      nextCursor: window.length > limit && last ? encodeCursor(String(last.seq)) : null,
    };
  }

  async get(id: string): Promise<OutboxEvent | undefined> {
    if (typeof id !== 'string' || !UUID_RE.test(id)) throw new InvalidParameterError('id', 'must be a UUID');
    const [event] = await this.#read([id.toLowerCase()], false);
    return event;
  }

  async overviewBacklog(): Promise<OverviewBacklog> {
    return redisOverviewBacklog(this.#redis, this.#keys, await this.backlog());
  }

  traffic(rule: DestinationRule, sinceMs: number, bucketMs: number): Promise<OutboxTraffic & TrafficCaps> {
    return redisOutboxTraffic(this.#redis, this.#keys, this.#scripts, rule, sinceMs, bucketMs);
  }

  held(limit: number): Promise<HeldAggregate[]> {
    return redisHeldAggregates(this.#redis, this.#keys, this.#scripts, limit);
  }

  failedGroups(limit: number): Promise<FailedGroup[]> {
    return redisFailedGroups(this.#redis, this.#keys, limit);
  }

  relaysAwake(): Promise<number> {
    return redisRelaysAwake(this.#redis, this.#keys);
  }

  memory(): Promise<RedisOutboxMemory> {
    return redisOutboxMemory(this.#redis, this.#keys);
  }

  cleanupDue(olderThanMs: number): Promise<{ due: number; capped: boolean }> {
    return redisCleanupDue(this.#redis, this.#keys, olderThanMs);
  }

  async backlog(): Promise<OutboxBacklog> {
    const [[, pending], [, failed], [, oldest], [, time]] = (await this.#redis
      .pipeline()
      .zcard(this.#keys.pending)
      .zcard(this.#keys.failed)
      .zrange(this.#keys.pending, 0, 0)
      .time()
      .exec()) as [unknown, unknown][] as [[null, number], [null, number], [null, string[]], [null, [string, string]]];
    let age = 0;
    const id = oldest[0];
    if (id !== undefined) {
      const created = await this.#redis.hget(this.#keys.event(id), 'c');
      const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
      if (created !== null) age = Math.max(0, (now - Number(created)) / 1000);
    }
    return { pending, failed, oldestPendingAgeSeconds: age };
  }

  async retry(selection: RetrySelection): Promise<RetryResult> {
    if ('ids' in selection) {
      const ids = validateIds(selection.ids).map((id) => id.toLowerCase());
      const replayed = await this.#replay([...new Set(ids)]);
      return { retried: replayed.length, ids: replayed };
    }
    let match: ((error: string | null) => boolean) | undefined;
    if ('error' in selection) {
      const wanted = selection.error;
      if (wanted !== null && typeof wanted !== 'string')
        throw new InvalidParameterError('error', 'must be a string or null');
      match = (error) => error === wanted;
    } else if (selection.allFailed !== true) throw new InvalidParameterError('all_failed', 'must be true');
    let retried = 0;
    // Keyset walk of the failed set by seq: replayed events leave it, so offsets would skip some.
    let after = 0;
    for (;;) {
      const flat = await this.#redis.zrangebyscore(
        this.#keys.failed,
        `(${after}`,
        '+inf',
        'WITHSCORES',
        'LIMIT',
        0,
        CHUNK,
      );
      if (flat.length === 0) break;
      let ids = flat.filter((_, i) => i % 2 === 0);
      after = Number(flat[flat.length - 1]);
      if (match) {
        const errors = await this.#hashes(ids, ['x']);
        ids = ids.filter((_, i) => match((errors[i]?.[0] as string | null | undefined) ?? null));
      }
      retried += (await this.#replay(ids)).length;
    }
    return { retried };
  }

  /**
   * Delete published and failed events older than `olderThanMs` (`outbox.cleanup_after`), in steps of 1000 per set.
   *
   * @example await inspector.cleanup(config.outbox.cleanupAfter);
   */
  async cleanup(olderThanMs: number): Promise<{ deleted: number; batches: number }> {
    let deleted = 0;
    let batches = 0;
    for (;;) {
      const [n, more] = (await this.#scripts.cleanup(
        2,
        this.#keys.published,
        this.#keys.failed,
        this.#keys.prefix,
        Math.max(0, Math.round(olderThanMs)),
        CHUNK,
      )) as [number, number];
      deleted += n;
      batches++;
      if (more !== 1) return { deleted, batches };
    }
  }

  async #replay(ids: readonly string[]): Promise<string[]> {
    const rows = await readEventRows(this.#redis, this.#keys, this.#scripts, ids, 'light');
    const args: string[] = [];
    for (const row of rows) {
      // An event whose aggregate is unknown (its data unreadable, and failed before `g` was recorded) stays failed.
      const aggregate = row?.status === 'failed' ? rowAggregate(row) : undefined;
      if (row && aggregate) args.push(row.id, aggregate.member);
    }
    const k = this.#keys;
    const replayed: string[] = [];
    // A replay script blocks Redis while it runs: a few hundred events per call keep each one to milliseconds.
    for (let i = 0; i < args.length; i += 2 * REPLAY_CHUNK) {
      const chunk = args.slice(i, i + 2 * REPLAY_CHUNK);
      const ids = (await this.#scripts.replay(
        5,
        k.due,
        k.delayed,
        k.leases,
        k.pending,
        k.failed,
        k.prefix,
        ...chunk,
      )) as string[];
      replayed.push(...ids);
    }
    return replayed;
  }

  async #hashes(ids: readonly string[], fields: readonly string[]): Promise<(string | null)[][]> {
    if (ids.length === 0) return [];
    const pipeline = this.#redis.pipeline();
    for (const id of ids) pipeline.hmget(this.#keys.event(id), ...fields);
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([err, value]) => {
      if (err) throw err;
      return value as (string | null)[];
    });
  }

  async #read(ids: readonly string[], preview: boolean): Promise<(OutboxEvent | undefined)[]> {
    const rows = await readEventRows(this.#redis, this.#keys, this.#scripts, ids, preview ? 'light' : 'full');
    return rows.map((row) => (row ? rowToEvent(row, preview) : undefined));
  }

  #setOf(status: OutboxStatus): string {
    return status === 'pending'
      ? this.#keys.pending
      : status === 'published'
        ? this.#keys.published
        : this.#keys.failed;
  }
}

const CURSOR_RE = /^seq:(\d{1,15})$/;

/** The cursors of inspect.ts (`encodeCursor`), read back; seqs stay below 2^53 (zset scores are doubles). */
function decodeCursor(cursor: string): number {
  const m = typeof cursor === 'string' ? CURSOR_RE.exec(Buffer.from(cursor, 'base64url').toString('utf8')) : null;
  if (!m || encodeCursor(m[1] as string) !== cursor) {
    throw new InvalidParameterError('cursor', 'is not a cursor this API returned');
  }
  return Number(m[1]);
}
