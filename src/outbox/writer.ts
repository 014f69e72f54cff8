import { toExecutor } from '../db/executor.js';
import { NotMigratedError, PgErrorCode, sqlState } from '../errors.js';
import { uuidv7 } from './ids.js';
import { OUTBOX_TABLE } from './rows.js';
import type { NewOutboxEvent, OutboxEvent } from './types.js';
import { validateEvent } from './validate-event.js';

// One statement for one event or many: unnest() turns parallel arrays into rows, so a batch costs the producer a
// single round trip. JSON travels as text and is cast once by Postgres. Only the columns Postgres fills in come back:
// returning whole rows made Node parse every payload it had just serialised. The AFTER INSERT statement trigger sends
// the NOTIFY that wakes relays at COMMIT.
const INSERT_SQL = `
  INSERT INTO ${OUTBOX_TABLE}
    (id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue, max_retries)
  SELECT id, aggregate_type, aggregate_id, event_type, payload::jsonb, headers::jsonb, metadata::jsonb, tenant_id,
         queue, max_retries
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
              $9::text[], $10::int[])
    AS e(id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue, max_retries)
  RETURNING id, seq, created_at, next_attempt_at`;

/**
 * Write one event, or many, into the outbox inside the caller's transaction — a Kysely `Transaction` (or `Kysely`)
 * or a pg client. The events become visible to relays only if that transaction commits. Every event is validated
 * first; on a bad one an `OutboxEventValidationError` names the field and nothing is written.
 *
 * @example
 * await db.transaction().execute(async (trx) => {
 *   await trx.insertInto('orders').values(order).execute();
 *   await storeInOutbox(trx, { aggregateType: 'order', aggregateId: order.id, eventType: 'order.created', payload: order });
 * });
 */
export async function storeInOutbox(trx: unknown, event: NewOutboxEvent): Promise<OutboxEvent>;
export async function storeInOutbox(trx: unknown, events: readonly NewOutboxEvent[]): Promise<OutboxEvent[]>;
export async function storeInOutbox(
  trx: unknown,
  input: NewOutboxEvent | readonly NewOutboxEvent[],
): Promise<OutboxEvent | OutboxEvent[]> {
  const single = !Array.isArray(input);
  const events = (single ? [input] : input) as readonly NewOutboxEvent[];
  events.forEach((e, i) => {
    validateEvent(e, single ? undefined : i);
  });
  const executor = toExecutor(trx);
  if (events.length === 0) return [];

  const cols: unknown[][] = Array.from({ length: 10 }, () => []);
  for (const e of events) {
    cols[0]?.push(e.id ?? uuidv7());
    cols[1]?.push(e.aggregateType ?? '');
    cols[2]?.push(e.aggregateId);
    cols[3]?.push(e.eventType);
    cols[4]?.push(JSON.stringify(e.payload));
    cols[5]?.push(JSON.stringify(e.headers ?? {}));
    cols[6]?.push(JSON.stringify(e.metadata ?? {}));
    cols[7]?.push(e.tenantId ?? '');
    cols[8]?.push(e.queue ?? null);
    cols[9]?.push(e.maxRetries ?? null);
  }
  let rows: InsertedRow[];
  try {
    ({ rows } = await executor.query<InsertedRow>(INSERT_SQL, cols));
  } catch (err) {
    if (sqlState(err) === PgErrorCode.undefinedTable) throw new NotMigratedError(OUTBOX_TABLE, { cause: err });
    throw err;
  }
  const byId = new Map(rows.map((r) => [r.id, r]));
  const stored = events.map((e, i): OutboxEvent => {
    const row = byId.get(cols[0]?.[i] as string) as InsertedRow;
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
      nextAttemptAt: row.next_attempt_at,
      lastError: null,
      createdAt: row.created_at,
      publishedAt: null,
    };
  });
  return single ? (stored[0] as OutboxEvent) : stored;
}

interface InsertedRow extends Record<string, unknown> {
  id: string;
  seq: string;
  created_at: Date;
  next_attempt_at: Date;
}
