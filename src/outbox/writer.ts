import { AutocommitHandle, autocommitHandle, type SqlExecutor, toExecutor } from '../db/executor.js';
import {
  NotMigratedError,
  OutboxDuplicateIdError,
  OutboxEventValidationError,
  OutboxQueueNotAllowedError,
  OutboxTransactionRequiredError,
  PgErrorCode,
  sqlState,
  UnsupportedExecutorError,
} from '../errors.js';
import { policyFor } from './allowed-queues.js';
import { EVENTS_TABLE, PARKED_TABLE } from './postgres/tables.js';
import {
  hasWriteOnceStorage,
  TRANSITION_INSERT_ONE_SQL,
  TRANSITION_INSERT_SQL,
  TRANSITION_TAKEN_SQL,
} from './postgres/upgrade-window.js';
import { isRedisHandle, type RedisOutboxOptions, storeInRedisOutbox } from './redis/writer.js';
import type { NewOutboxEvent, OutboxEvent } from './types.js';
import { checkedIds } from './validate-event.js';

// One statement for one event or many: unnest() turns parallel arrays into rows, so a batch costs the producer a
// single round trip. JSON travels as text and is cast once by Postgres. Only the columns Postgres fills in come back:
// returning whole rows made Node parse every payload it had just serialised. The table's defaults fill in the
// transaction id, seq, partition and lane (migrations/0008); the AFTER INSERT statement trigger rings the relays'
// doorbell at COMMIT.
// An id that is already taken must not raise 23505, which would abort the caller's transaction: the NOT EXISTS
// makes the statement insert nothing when an id the caller chose ($11) is stored already (in any partition of the
// ring, or parked), and ON CONFLICT DO NOTHING covers an id that a concurrent transaction commits into the same
// partition while we wait on its row. Fewer rows back than events sent means a duplicate; see `write`. Generated
// (UUIDv7) ids are not probed, so without caller-chosen ids the NOT EXISTS costs nothing.
const INSERT_SQL = `
  INSERT INTO ${EVENTS_TABLE}
    (id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue, max_retries)
  SELECT id, aggregate_type, aggregate_id, event_type, payload::jsonb, headers::jsonb, metadata::jsonb, tenant_id,
         queue, max_retries
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
              $9::text[], $10::int[])
    AS e(id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue, max_retries)
  WHERE NOT EXISTS (SELECT 1 FROM ${EVENTS_TABLE} o WHERE o.id = ANY($11::uuid[]))
    AND NOT EXISTS (SELECT 1 FROM ${PARKED_TABLE} p WHERE p.id = ANY($11::uuid[]))
  ON CONFLICT DO NOTHING
  RETURNING id, seq, created_at`;

// One event with a generated id, the common case: a plain VALUES row plans in a fraction of the unnest statement's
// time (bench/producer.ts). A UUIDv7 never clashes; ON CONFLICT is there for the impossible anyway.
const INSERT_ONE_SQL = `
  INSERT INTO ${EVENTS_TABLE}
    (id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue, max_retries)
  VALUES ($1::uuid, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9, $10::int)
  ON CONFLICT DO NOTHING
  RETURNING id, seq, created_at`;

/**
 * Options of `storeInOutbox`; pass `config.outbox` to apply your configured destination allow-list (and, with the
 * Redis outbox, its `redis.keyPrefix`).
 */
export type StoreInOutboxOptions = RedisOutboxOptions;

/**
 * Write one event, or many, into the outbox inside the caller's transaction — a Kysely `Transaction` or a pg
 * `Client`/`PoolClient` after `BEGIN`. The events become visible to relays only if that transaction commits.
 * A pg `Pool` or a root `Kysely` instance is refused (`OutboxTransactionRequiredError`): each statement on them
 * autocommits, so the event would be published even if the app's transaction rolled back (G1). Use
 * `storeInOutboxStandalone` to write events on their own. A pg client is taken as is: outside `BEGIN` it autocommits.
 *
 * Every event is checked first, and nothing is written when one is bad: an `OutboxEventValidationError` names the
 * field, an `OutboxDuplicateIdError` an id used twice or already stored, an `OutboxQueueNotAllowedError` a `queue`
 * that `options` (default: the default `queue_pattern`'s lists only) does not allow. None of them leaves the caller's
 * transaction aborted.
 *
 * @example
 * await db.transaction().execute(async (trx) => {
 *   await trx.insertInto('orders').values(order).execute();
 *   await storeInOutbox(trx, { aggregateType: 'order', aggregateId: order.id, eventType: 'order.created', payload: order });
 * });
 */
export async function storeInOutbox(
  trx: unknown,
  event: NewOutboxEvent,
  options?: StoreInOutboxOptions,
): Promise<OutboxEvent>;
export async function storeInOutbox(
  trx: unknown,
  events: readonly NewOutboxEvent[],
  options?: StoreInOutboxOptions,
): Promise<OutboxEvent[]>;
export async function storeInOutbox(
  trx: unknown,
  input: NewOutboxEvent | readonly NewOutboxEvent[],
  options?: StoreInOutboxOptions,
): Promise<OutboxEvent | OutboxEvent[]> {
  const single = !Array.isArray(input);
  const events = (single ? [input] : input) as readonly NewOutboxEvent[];
  // The Redis outbox (`outbox.storage_type: redis`): the events join the app's ioredis multi(); see redis/writer.ts.
  if (isRedisHandle(trx)) {
    const queued = storeInRedisOutbox(trx, events, single, options);
    return single ? (queued[0] as OutboxEvent) : queued;
  }
  const handle = autocommitHandle(trx);
  if (handle) throw new OutboxTransactionRequiredError(handle);
  const stored = await write(toExecutor(trx), events, single, options);
  return single ? (stored[0] as OutboxEvent) : stored;
}

/**
 * Write events on their own, in a transaction of their own that commits before this returns: for seeding, scripts
 * and producers with no database work to share a transaction with. Takes a pg `Pool` or a root `Kysely` instance.
 * All or nothing, with the same checks and errors as `storeInOutbox`. Never use it for an event that must be
 * published only if some other write commits: that is what `storeInOutbox(trx, ...)` is for.
 *
 * @example await storeInOutboxStandalone(pool, { aggregateId: 'user-123', eventType: 'user.invited', payload: {} });
 */
export async function storeInOutboxStandalone(
  poolOrDb: unknown,
  event: NewOutboxEvent,
  options?: StoreInOutboxOptions,
): Promise<OutboxEvent>;
export async function storeInOutboxStandalone(
  poolOrDb: unknown,
  events: readonly NewOutboxEvent[],
  options?: StoreInOutboxOptions,
): Promise<OutboxEvent[]>;
export async function storeInOutboxStandalone(
  poolOrDb: unknown,
  input: NewOutboxEvent | readonly NewOutboxEvent[],
  options?: StoreInOutboxOptions,
): Promise<OutboxEvent | OutboxEvent[]> {
  const single = !Array.isArray(input);
  const events = (single ? [input] : input) as readonly NewOutboxEvent[];
  const stored = await inOwnTransaction(poolOrDb, (executor) => write(executor, events, single, options));
  return single ? (stored[0] as OutboxEvent) : stored;
}

interface KyselyRoot {
  transaction(): { execute<T>(fn: (trx: unknown) => Promise<T>): Promise<T> };
}
interface PgPool {
  connect(): Promise<{ query(text: string, params?: unknown[]): Promise<unknown>; release(err?: unknown): void }>;
}

async function inOwnTransaction<T>(poolOrDb: unknown, work: (executor: SqlExecutor) => Promise<T>): Promise<T> {
  const handle = autocommitHandle(poolOrDb);
  if (handle === AutocommitHandle.kysely) {
    return (poolOrDb as KyselyRoot).transaction().execute((trx) => work(toExecutor(trx)));
  }
  if (handle === AutocommitHandle.pool) {
    const client = await (poolOrDb as PgPool).connect();
    let broken: unknown;
    try {
      await client.query('BEGIN');
      const result = await work(toExecutor(client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
        broken = rollbackErr; // a connection that cannot roll back must not go back to the pool
      });
      throw err;
    } finally {
      client.release(broken);
    }
  }
  throw new UnsupportedExecutorError(
    'storeInOutboxStandalone needs a pg Pool or a root Kysely instance (it opens and commits its own transaction); ' +
      'inside your own transaction, call storeInOutbox(trx, events) instead',
  );
}

async function write(
  executor: SqlExecutor,
  events: readonly NewOutboxEvent[],
  single: boolean,
  options: StoreInOutboxOptions | undefined,
): Promise<OutboxEvent[]> {
  const index = (i: number) => (single ? undefined : i);
  const policy = policyFor(options);
  const ids = checkedIds(events, single, (e, at) => {
    const kindReason = policy.kindReason(e.headers?.destination, e.queue);
    if (kindReason !== undefined) throw new OutboxEventValidationError('headers.destination', kindReason, at);
    if (e.queue === undefined) return;
    const reason = policy.reason(e.queue);
    if (reason !== undefined) throw new OutboxQueueNotAllowedError(e.queue, at, reason);
  });
  if (events.length === 0) return [];

  const chosen: string[] = [];
  const cols: unknown[][] = [ids, ...Array.from({ length: 9 }, () => []), chosen];
  events.forEach((e, i) => {
    if (e.id !== undefined) chosen.push(ids[i] as string);
    cols[1]?.push(e.aggregateType ?? '');
    cols[2]?.push(e.aggregateId);
    cols[3]?.push(e.eventType);
    cols[4]?.push(JSON.stringify(e.payload));
    cols[5]?.push(JSON.stringify(e.headers ?? {}));
    cols[6]?.push(JSON.stringify(e.metadata ?? {}));
    cols[7]?.push(e.tenantId ?? '');
    cols[8]?.push(e.queue ?? null);
    cols[9]?.push(e.maxRetries ?? null);
  });
  let rows = await insert(executor, cols);
  // A clash whose row is gone again by the time we look (cleanup deleted it) is retried, a bounded number of times.
  for (let attempt = 1; rows.length < events.length; attempt++) {
    const at = await takenIndex(executor, ids, rows);
    const i = Math.max(at, 0);
    if (at >= 0 || attempt === 3) throw new OutboxDuplicateIdError(ids[i] as string, index(i));
    rows = await insert(executor, cols);
  }

  const byId = new Map(rows.map((r) => [r.id, r]));
  return events.map((e, i): OutboxEvent => {
    const row = byId.get(ids[i] as string) as InsertedRow;
    return {
      id: row.id,
      seq: String(row.seq),
      aggregateId: e.aggregateId,
      aggregateType: e.aggregateType ?? '',
      eventType: e.eventType,
      // As the relay will publish it: JSON, so a Date is its ISO string, as everywhere downstream.
      payload: JSON.parse(cols[4]?.[i] as string),
      headers: { ...(e.headers ?? {}) },
      metadata: JSON.parse(cols[6]?.[i] as string),
      tenantId: e.tenantId ?? '',
      queue: e.queue ?? null,
      status: 'pending',
      retryCount: 0,
      maxRetries: e.maxRetries ?? null,
      nextAttemptAt: row.created_at,
      lastError: null,
      createdAt: row.created_at,
      publishedAt: null,
    };
  });
}

async function insert(executor: SqlExecutor, cols: unknown[][]): Promise<InsertedRow[]> {
  try {
    // One event with a generated id: the VALUES statement takes the columns' first (only) values. A chosen id goes
    // through the batch statement, whose probe finds it in any partition.
    const one = cols[0]?.length === 1 && cols[10]?.length === 0;
    const params = one ? cols.slice(0, 10).map((col) => col[0]) : cols;
    const current = await hasWriteOnceStorage(executor);
    const text = current
      ? one
        ? INSERT_ONE_SQL
        : INSERT_SQL
      : one
        ? TRANSITION_INSERT_ONE_SQL
        : TRANSITION_INSERT_SQL;
    return (await executor.query<InsertedRow>(text, params)).rows;
  } catch (err) {
    if (sqlState(err) === PgErrorCode.undefinedTable) throw new NotMigratedError(EVENTS_TABLE, { cause: err });
    throw err;
  }
}

/**
 * Some id was taken; returns the index of the first taken one (-1 if none is any more). Either nothing was inserted
 * (an id was already committed: NOT EXISTS), or, when a concurrent transaction committed one of our ids while we
 * waited on it, every other row was: those are deleted again, in the caller's transaction, so a caller that catches
 * the error and commits does not commit half a batch (G6).
 */
async function takenIndex(executor: SqlExecutor, ids: readonly string[], inserted: readonly InsertedRow[]) {
  if (inserted.length > 0) {
    const insertedIds = inserted.map((r) => r.id);
    await executor.query(`DELETE FROM ${EVENTS_TABLE} WHERE id = ANY($1::uuid[])`, [insertedIds]);
    const kept = new Set(insertedIds);
    return ids.findIndex((id) => !kept.has(id));
  }
  const { rows } = await executor.query<{ id: string }>(
    (await hasWriteOnceStorage(executor))
      ? `SELECT id FROM ${EVENTS_TABLE} WHERE id = ANY($1::uuid[]) UNION SELECT id FROM ${PARKED_TABLE} WHERE id = ANY($1::uuid[])`
      : TRANSITION_TAKEN_SQL,
    [ids],
  );
  const taken = new Set(rows.map((r) => r.id));
  return ids.findIndex((id) => taken.has(id));
}

interface InsertedRow extends Record<string, unknown> {
  id: string;
  seq: string;
  created_at: Date;
}
