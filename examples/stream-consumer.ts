/**
 * A worked Redis Streams consumer for `outbox.publisher: stream`: a consumer group reads the relay's entries, applies
 * each one's effect exactly once with `processInTransaction`, acknowledges it with XACK, and takes over the entries of
 * a crashed consumer with XAUTOCLAIM.
 *
 * Why each piece is there:
 * - The relay appends each event once (G2), but a consumer can still see an entry twice: it crashes after its effect
 *   and before XACK, and XAUTOCLAIM hands the entry to another consumer. The idempotency key (the event id) turns that
 *   second delivery into `{ duplicate: true }`.
 * - `processInTransaction` commits the key together with the effect's own Postgres writes: a crash before COMMIT leaves
 *   neither (the retry runs it), a crash after leaves both (the retry is a duplicate). `processWithIdempotency` fits
 *   effects outside Postgres (an e-mail), at most once per key among concurrent callers.
 * - XREADGROUP ... BLOCK holds its connection, so the consumer reads on a connection of its own, never the Manager's.
 *
 * Run it (the stream is the relay's `queue_pattern` list name, or an event's `queue`):
 *   STREAM=jobqueue:low_priority GROUP=ledger CONSUMER=worker-1 npx tsx examples/stream-consumer.ts
 * (the package ships this file: copy it into your app and run it the same way)
 * DATABASE_URL, REDIS_URL / REDIS_CLUSTER_NODES and EXACTLY_ONCE_CONFIG are read as by the relay. SIGTERM stops it
 * after the entry in hand.
 */
import { pathToFileURL } from 'node:url';
// By the package's name, as in your project (in a checkout of exactly-once, tsconfig.json maps these to src/).
import { loadConfig } from 'exactly-once';
import { createLogger, Manager } from 'exactly-once/manager';
import { createRedisClient, type RedisClient } from 'exactly-once/relay';
import type { Transaction } from 'kysely';

/** One stream entry: its stream ID and its fields (see `STREAM_FIELDS`, exported by exactly-once/relay). */
export interface StreamEntry {
  streamId: string;
  fields: Record<string, string>;
}

export interface StreamConsumerOptions {
  /** A connection of the consumer's own: blocking reads hold it. */
  redis: RedisClient;
  manager: Pick<Manager, 'generateIdempotencyKey' | 'processInTransaction'>;
  stream: string;
  group: string;
  consumer: string;
  /** The effect of one entry, written through `trx`: committed with its idempotency key, or not at all. */
  // biome-ignore lint/suspicious/noExplicitAny: the application's database schema type
  handle(trx: Transaction<any>, entry: StreamEntry): Promise<unknown>;
  /** Entries per read. @defaultValue 10 */
  count?: number;
  /** How long a read waits for new entries before looking for abandoned ones again. @defaultValue 2000 */
  blockMs?: number;
  /** An entry delivered and not acknowledged for this long is taken over (its consumer is presumed dead). @defaultValue 30000 */
  claimIdleMs?: number;
  signal?: AbortSignal;
}

/**
 * Consume `stream` as `consumer` of `group` until `signal` aborts: take over abandoned entries (XAUTOCLAIM), read new
 * ones (XREADGROUP), apply each with `processInTransaction`, XACK it.
 *
 * @example await consumeStream({ redis, manager, stream: 'orders', group: 'billing', consumer: 'w1', handle });
 */
export async function consumeStream(options: StreamConsumerOptions): Promise<void> {
  const { redis, stream, group, consumer } = options;
  const count = options.count ?? 10;
  await createGroup(redis, stream, group);
  let claimCursor = '0-0';
  while (!options.signal?.aborted) {
    // Entries another consumer read and never acknowledged, idle long enough that it is presumed dead.
    const [next, claimed] = (await redis.call(
      'XAUTOCLAIM',
      stream,
      group,
      consumer,
      options.claimIdleMs ?? 30_000,
      claimCursor,
      'COUNT',
      count,
    )) as [string, [string, string[]][]];
    claimCursor = next;
    for (const raw of claimed) await apply(options, raw);
    if (claimed.length > 0 || options.signal?.aborted) continue;

    const read = (await redis.call(
      'XREADGROUP',
      'GROUP',
      group,
      consumer,
      'COUNT',
      count,
      'BLOCK',
      options.blockMs ?? 2000,
      'STREAMS',
      stream,
      '>',
    )) as [string, [string, string[]][]][] | null;
    for (const raw of read?.[0]?.[1] ?? []) await apply(options, raw);
  }
}

async function apply(options: StreamConsumerOptions, [streamId, flat]: [string, string[]]): Promise<void> {
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
  // The event id is the same on every delivery of this entry (and on a re-publish of the event), so it is the key.
  const key = options.manager.generateIdempotencyKey(options.stream, fields.tenant_id ?? '', fields.id ?? streamId);
  await options.manager.processInTransaction(key, (trx) => options.handle(trx, { streamId, fields }));
  await options.redis.call('XACK', options.stream, options.group, streamId);
}

/** The group, reading the stream from its start; an existing group is kept as it is. */
async function createGroup(redis: RedisClient, stream: string, group: string): Promise<void> {
  try {
    await redis.call('XGROUP', 'CREATE', stream, group, '0', 'MKSTREAM');
  } catch (err) {
    if (!String((err as Error).message).startsWith('BUSYGROUP')) throw err;
  }
}

/** The demo effect: one ledger row per event. No unique constraint: exactly-once comes from the idempotency key. */
async function main(): Promise<void> {
  const env = process.env;
  const config = loadConfig();
  const logger = createLogger({ level: env.LOG_LEVEL ?? 'info' }).child({ component: 'stream-consumer' });
  const manager = new Manager(config, { logger });
  // Blocking reads need a connection of their own, and a read may wait longer than a fail-fast client allows.
  const redis = createRedisClient(config.redis, logger, { enableOfflineQueue: true, maxRetriesPerRequest: null });
  const stop = new AbortController();
  process.once('SIGTERM', () => stop.abort());
  process.once('SIGINT', () => stop.abort());
  await manager.pool.query(
    'CREATE TABLE IF NOT EXISTS stream_ledger (event_id uuid NOT NULL, aggregate_id text NOT NULL, payload jsonb NOT NULL)',
  );
  try {
    await consumeStream({
      redis,
      manager,
      stream: env.STREAM ?? 'jobqueue:low_priority',
      group: env.GROUP ?? 'ledger',
      consumer: env.CONSUMER ?? `consumer-${process.pid}`,
      claimIdleMs: Number(env.CLAIM_IDLE_MS ?? 30_000),
      blockMs: Number(env.BLOCK_MS ?? 2000),
      signal: stop.signal,
      handle: (trx, { fields }) =>
        trx
          .insertInto('stream_ledger')
          .values({ event_id: fields.id, aggregate_id: fields.aggregate_id, payload: fields.payload })
          .execute(),
    });
  } finally {
    redis.disconnect();
    await manager.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
