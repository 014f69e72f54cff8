import { OutboxEventValidationError, OutboxMultiRequiredError, OutboxQueueNotAllowedError } from '../../errors.js';
import { keySlot } from '../../publishers/hash-tag.js';
import { type DestinationOptions, policyFor } from '../allowed-queues.js';
import type { NewOutboxEvent, OutboxEvent } from '../types.js';
import { checkedIds } from '../validate-event.js';
import { aggregateMember, DEFAULT_KEY_PREFIX, outboxKeys } from './keys.js';
import { outboxLua } from './scripts.js';
import { encodeEvent } from './stored-event.js';

/** `storeInOutbox`'s options as the Redis outbox reads them: pass `config.outbox`. */
export interface RedisOutboxOptions extends DestinationOptions {
  /** `outbox.redis`. @defaultValue { keyPrefix: "eo:{outbox}:" } */
  redis?: { keyPrefix?: string };
}

/** What the writer needs of an ioredis `multi()`: queue an EVAL. */
interface RedisTransaction {
  eval(script: string, numKeys: number, args: string[]): unknown;
  isCluster?: boolean;
}

const STORE_LUA = outboxLua('store.lua');

/**
 * Is `handle` an ioredis client, pipeline or multi? Duck-typed (ioredis marks pipelines with `isPipeline`), so a
 * second copy of ioredis in the app's node_modules is recognised too. Kysely and pg handles have none of these.
 */
export function isRedisHandle(handle: unknown): boolean {
  if (typeof handle !== 'object' || handle === null) return false;
  const h = handle as Record<string, unknown>;
  if (h.isPipeline === true && typeof h.exec === 'function') return true;
  return typeof h.multi === 'function' && typeof h.defineCommand === 'function' && typeof h.eval === 'function';
}

/**
 * The Redis half of `storeInOutbox`: queue the events into the app's `multi()`, as one script that stores them all or
 * none (lua/store.lua). Nothing reaches Redis before the app's EXEC: if EXEC runs, the events are stored together with
 * the app's writes and published exactly once; if the transaction is DISCARDed (or a WATCHed key changed), never (G1).
 *
 * Events are validated exactly as for Postgres before anything is queued. What only the server can know, an `id` that
 * is already stored, makes the script's reply in EXEC's result an `EO_OUTBOX_DUPLICATE_ID` error and stores none of
 * the call's events (Redis has no rollback: the app's other commands of that EXEC still apply). Ids are generated
 * (UUIDv7) unless you choose them, so this only concerns ids you pass.
 *
 * The returned events are what will be stored; `seq` is `""` and `createdAt` this process's clock, because the
 * server assigns both at EXEC (read them back with `outbox list`).
 */
export function storeInRedisOutbox(
  handle: unknown,
  events: readonly NewOutboxEvent[],
  single: boolean,
  options: RedisOutboxOptions = {},
): OutboxEvent[] {
  const h = handle as Record<string, unknown>;
  if (h.isPipeline !== true) throw new OutboxMultiRequiredError('an ioredis client');
  const open = openMulti(h);
  if (open !== true) throw new OutboxMultiRequiredError(open);
  const multi = handle as RedisTransaction;
  const keys = outboxKeys(options.redis?.keyPrefix ?? DEFAULT_KEY_PREFIX);
  const policy = policyFor(options);
  const outboxSlot = keySlot(keys.due);
  const _index = (i: number) => (single ? undefined : i);
  const ids = checkedIds(events, single, (e, at) => {
    if (e.headers?.destination === 'stream') {
      throw new OutboxEventValidationError(
        'headers.destination',
        '"stream" is not available with outbox.storage_type: redis (it moves events onto lists)',
        at,
      );
    }
    if (e.queue === undefined) return;
    const reason =
      policy.reason(e.queue) ??
      (e.queue.startsWith(keys.prefix)
        ? `${JSON.stringify(e.queue)} is reserved: names starting with outbox.redis.key_prefix are the outbox's own keys`
        : undefined) ??
      (multi.isCluster && keySlot(e.queue) !== outboxSlot
        ? `${JSON.stringify(e.queue)} is in cluster slot ${keySlot(e.queue)}, the outbox in slot ${outboxSlot}: ` +
          "the relay could not move it atomically; give it the outbox key prefix's hash tag"
        : undefined);
    if (reason !== undefined) throw new OutboxQueueNotAllowedError(e.queue, at, reason);
  });
  if (events.length === 0) return [];

  const eventKeys: string[] = [];
  const listKeys: string[] = [];
  const args: string[] = [];
  const stored = events.map((e, i): OutboxEvent => {
    const id = ids[i] as string;
    const aggregateType = e.aggregateType ?? '';
    const aggregate = aggregateMember(aggregateType, e.aggregateId);
    const encoded = encodeEvent(e);
    eventKeys.push(keys.event(id));
    listKeys.push(keys.aggregateList(aggregate));
    const large = encoded.large;
    args.push(id, encoded.d, aggregate, large?.dm ?? '', large?.pv ?? '', large ? String(large.pb) : '');
    const now = new Date();
    return {
      id,
      seq: '',
      aggregateId: e.aggregateId,
      aggregateType,
      eventType: e.eventType,
      payload: encoded.payload,
      headers: { ...(e.headers ?? {}) },
      metadata: encoded.metadata,
      tenantId: e.tenantId ?? '',
      queue: e.queue ?? null,
      status: 'pending',
      retryCount: 0,
      maxRetries: e.maxRetries ?? null,
      nextAttemptAt: now,
      lastError: null,
      createdAt: now,
      publishedAt: null,
    };
  });
  // One array, never spread: 30,000 events are 150,000 arguments, past what a JavaScript call may take (ioredis
  // flattens an array argument into the command's arguments).
  const fixed = [keys.seq, keys.due, keys.delayed, keys.leases, keys.pending];
  const argv = fixed.concat(eventKeys, listKeys, args, [keys.doorbell]);
  multi.eval(STORE_LUA, fixed.length + eventKeys.length * 2, argv);
  return stored;
}

/**
 * `true` when commands queued now run inside an open MULTI, else what the handle is instead. A pipeline whose MULTI
 * was already closed (`p.multi(); p.set(...); p.exec()` queues the EXEC) would run the event's script after EXEC,
 * outside the app's transaction: with a failed WATCH the app's writes are discarded and the event stored anyway.
 * ioredis queues MULTI, EXEC and DISCARD like any command, so the last of them in the queue says whether one is open;
 * `_transactions` (its count of open MULTIs) agrees when this ioredis has it.
 */
function openMulti(h: Record<string, unknown>): true | string {
  const queued = (h._queue as { name?: string }[] | undefined) ?? [];
  let last: string | undefined;
  for (let i = queued.length - 1; i >= 0 && last === undefined; i--) {
    const name = queued[i]?.name;
    if (name === 'multi' || name === 'exec' || name === 'discard') last = name;
  }
  const counted = typeof h._transactions === 'number' ? h._transactions > 0 : true;
  if (last === 'multi' && counted) return true;
  if (last === undefined) return 'an ioredis pipeline() without MULTI';
  return `an ioredis pipeline whose MULTI was already closed by ${last.toUpperCase()}`;
}
