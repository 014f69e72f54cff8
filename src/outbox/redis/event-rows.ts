import type { RedisClient } from '../../redis.js';
import { payloadPreview } from '../payload-preview.js';
import type { OutboxEvent, OutboxStatus } from '../types.js';
import type { OutboxKeys } from './keys.js';
import type { OutboxScripts } from './scripts.js';
import { decodeEvent, memberOf, type StoredEventData, splitAggregate } from './stored-event.js';

/** One event hash as the inspector and the dashboard read it (keys.ts has the fields). */
export interface EventRow {
  id: string;
  /** `d`; in a `light` read of a large payload, `dm` (the event without its payload). */
  data: string | null;
  seq: string | null;
  created: string | null;
  status: string | null;
  retries: string | null;
  next: string | null;
  error: string | null;
  published: string | null;
  /** The aggregate member, recorded once the event failed (`g`). */
  aggregate: string | null;
  /** A large payload's preview and size (`pv`, `pb`; `light` reads only). */
  preview: string | null;
  payloadBytes: string | null;
}

const FULL = ['d', 'q', 'c', 's', 'r', 'n', 'x', 'pa', 'g'] as const;
const LIGHT_STRIDE = 11;
/** Hashes per read-events.lua call: a short script even for legacy events whose whole `d` it copies. */
const LIGHT_CHUNK = 500;

/**
 * The hashes of `ids`, in order; `undefined` where none is stored. `full` reads `d` whole (one event, a replay of the
 * CLI's listing); `light` reads the small fields of a large payload instead (read-events.lua), for listings and counts.
 */
export async function readEventRows(
  redis: RedisClient,
  keys: OutboxKeys,
  scripts: OutboxScripts,
  ids: readonly string[],
  mode: 'full' | 'light',
): Promise<(EventRow | undefined)[]> {
  if (ids.length === 0) return [];
  const flat: (string | null)[][] = [];
  if (mode === 'full') {
    const pipeline = redis.pipeline();
    for (const id of ids) pipeline.hmget(keys.event(id), ...FULL);
    for (const [err, value] of (await pipeline.exec()) ?? []) {
      if (err) throw err;
      flat.push([...(value as (string | null)[]), null, null]);
    }
  } else {
    for (let i = 0; i < ids.length; i += LIGHT_CHUNK) {
      const chunk = ids.slice(i, i + LIGHT_CHUNK).map((id) => keys.event(id));
      const reply = (await scripts.read(chunk.length, ...chunk)) as (string | null)[];
      for (let j = 0; j < chunk.length; j++) flat.push(reply.slice(j * LIGHT_STRIDE, (j + 1) * LIGHT_STRIDE));
    }
  }
  return flat.map((v, i) => {
    const [data, seq, created, status, retries, next, error, published, aggregate, preview, payloadBytes] = v.map(
      (x) => x ?? null,
    );
    if (data === null && status === null && seq === null) return undefined;
    return {
      id: ids[i] as string,
      data: data ?? null,
      seq: seq ?? null,
      created: created ?? null,
      status: status ?? null,
      retries: retries ?? null,
      next: next ?? null,
      error: error ?? null,
      published: published ?? null,
      aggregate: aggregate ?? null,
      preview: preview ?? null,
      payloadBytes: payloadBytes ?? null,
    };
  });
}

/** The aggregate member of a row: recorded (`g`), else from its data; `undefined` when neither tells. */
export function rowAggregate(row: EventRow): { member: string; event: StoredEventData | undefined } | undefined {
  const decoded = decodeEvent(row.data);
  const event = 'unreadable' in decoded ? undefined : decoded;
  if (row.aggregate !== null) return { member: row.aggregate, event };
  return event ? { member: memberOf(event), event } : undefined;
}

/**
 * A row as the `OutboxEvent` the Postgres outbox returns for its row. `preview`: `payloadPreview` instead of `payload`.
 * An event whose data cannot be read (damaged, or its hash evicted) is still shown, with what is known: its aggregate
 * (`g`), status, times and error; no event type, an empty payload.
 */
export function rowToEvent(row: EventRow, preview: boolean): OutboxEvent {
  const decoded = decodeEvent(row.data);
  const e = 'unreadable' in decoded ? undefined : decoded;
  const aggregate = e ? { aggregateType: e.at ?? '', aggregateId: e.ai } : splitAggregate(row.aggregate ?? '');
  const createdAt = new Date(Number(row.created ?? 0));
  const event: OutboxEvent = {
    id: row.id,
    seq: row.seq ?? '0',
    ...aggregate,
    eventType: e?.et ?? '',
    payload: preview ? undefined : (e?.p ?? null),
    headers: e?.h ?? {},
    metadata: e?.m ?? {},
    tenantId: e?.tn ?? '',
    queue: e?.q ?? null,
    status: (row.status ?? 'pending') as OutboxStatus,
    retryCount: Number(row.retries ?? 0),
    maxRetries: e?.mr ?? null,
    nextAttemptAt: row.next ? new Date(Number(row.next)) : createdAt,
    lastError: row.error ?? (e ? null : `event is unreadable: ${(decoded as { unreadable: string }).unreadable}`),
    createdAt,
    publishedAt: row.published ? new Date(Number(row.published)) : null,
  };
  if (preview) {
    event.payloadPreview =
      row.preview !== null
        ? payloadPreview(row.preview, Number(row.payloadBytes ?? Buffer.byteLength(row.preview)))
        : payloadPreview(JSON.stringify(e?.p ?? null));
  }
  return event;
}
