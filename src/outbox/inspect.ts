import { InvalidParameterError } from '../errors.js';
import { UUID_RE } from './ids.js';
import type { OutboxEvent, OutboxStatus } from './types.js';

// What operators ask of an outbox, whichever storage holds it: listing options and pages, replay selections, the
// backlog's shape, and the checks and cursor codec both storages' inspectors share. The Postgres outbox answers in
// postgres/inspect.ts, the Redis outbox in redis/inspector.ts.

export const OUTBOX_STATUSES: readonly OutboxStatus[] = ['pending', 'published', 'failed'];
export const LIST_DEFAULT_LIMIT = 50;
export const LIST_MAX_LIMIT = 1000;
/** Ids one retry call may name; more belongs in `allFailed`. */
export const RETRY_MAX_IDS = 1000;

export interface ListOutboxOptions {
  /** Only events in this state. @defaultValue every state */
  status?: OutboxStatus;
  /**
   * Only events that go to this Redis key: their own `queue` column when set, else the list `queue_pattern` names for
   * their `priority` header (see `destinations`). Exact match.
   */
  queue?: string;
  /** How events without a `queue` pick their list; needed to match them with `queue`. @defaultValue the config defaults */
  destinations?: DestinationRule;
  /** Exact match on `aggregate_type` (`''` is the default type). */
  aggregateType?: string;
  /** Exact match on `aggregate_id`. */
  aggregateId?: string;
  /** Exact match on `event_type`. */
  eventType?: string;
  /** Exact match on `tenant_id` (`''`: the tenant-less events). */
  tenantId?: string;
  /** Only events written at or after this time (`created_at`). */
  since?: Date;
  /** Only events written before this time (`created_at`). */
  until?: Date;
  /** `asc`: oldest first; `desc`: newest first. Both are keyset pages on `seq`. @defaultValue "asc" */
  order?: 'asc' | 'desc';
  /** Page size, 1..1000. @defaultValue 50 */
  limit?: number;
  /** `nextCursor` of the previous page (of the same `order`). */
  cursor?: string;
  /**
   * `preview`: each event carries `payloadPreview` (the start of its payload's JSON text and its size) and no
   * `payload`, so a page of large payloads stays small (src/outbox/payload-preview.ts). @defaultValue "full"
   */
  payload?: 'full' | 'preview';
}

/** `outbox.queue_pattern` and `outbox.default_priority`: the list an event without `queue` is pushed to. */
export interface DestinationRule {
  queuePattern: string;
  defaultPriority: 'high' | 'low';
}

export const DEFAULT_DESTINATIONS: DestinationRule = {
  queuePattern: 'jobqueue:{priority}_priority',
  defaultPriority: 'low',
};

export interface OutboxPage {
  events: OutboxEvent[];
  /** Pass as `cursor` to get the next page; `null` on the last page. */
  nextCursor: string | null;
}

/**
 * Which failed events to replay: named ones, every failed event, or every failed event whose `last_error` is exactly
 * `error` (`null`: those without one), as `failedGroups` lists them.
 */
export type RetrySelection = { ids: readonly string[] } | { allFailed: true } | { error: string | null };

export interface RetryResult {
  /** Events moved from `failed` back to `pending`. */
  retried: number;
  /** With `ids`: the ids that were replayed (ids that were not `failed` are left alone and not listed). */
  ids?: string[];
}

export interface OutboxBacklog {
  pending: number;
  failed: number;
  /** Seconds since the oldest pending event was written (database clock); 0 when nothing is pending. */
  oldestPendingAgeSeconds: number;
}

/** The `ids` of a retry selection, checked (both storages' inspectors use it). */
/** The status, page size and order of a listing, checked and defaulted (both outbox storages list with them). */
export function pageOptions(options: Pick<ListOutboxOptions, 'status' | 'limit' | 'order'>): {
  status: OutboxStatus | undefined;
  limit: number;
  order: 'asc' | 'desc';
} {
  const status = options.status;
  if (status !== undefined && !OUTBOX_STATUSES.includes(status)) {
    throw new InvalidParameterError('status', `must be one of ${OUTBOX_STATUSES.join(', ')}`);
  }
  const limit = options.limit ?? LIST_DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > LIST_MAX_LIMIT) {
    throw new InvalidParameterError('limit', `must be an integer from 1 to ${LIST_MAX_LIMIT}`);
  }
  const order = options.order ?? 'asc';
  if (order !== 'asc' && order !== 'desc') throw new InvalidParameterError('order', 'must be one of asc, desc');
  return { status, limit, order };
}

export function validateIds(ids: unknown): string[] {
  if (!Array.isArray(ids)) throw new InvalidParameterError('ids', 'must be an array of event ids');
  if (ids.length === 0) throw new InvalidParameterError('ids', 'must name at least one event id');
  if (ids.length > RETRY_MAX_IDS) {
    throw new InvalidParameterError('ids', `at most ${RETRY_MAX_IDS} ids per call; use all_failed for more`);
  }
  ids.forEach((id, i) => {
    if (typeof id !== 'string' || !UUID_RE.test(id)) throw new InvalidParameterError(`ids[${i}]`, 'must be a UUID');
  });
  return ids as string[];
}

const CURSOR_RE = /^seq:(\d{1,19})$/;

/** Opaque to callers; a base64url of the last seq seen. */
/** The `nextCursor` that continues a listing after the event with this `seq`. */
export function encodeCursor(seq: string): string {
  return Buffer.from(`seq:${seq}`).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  const m = typeof cursor === 'string' ? CURSOR_RE.exec(Buffer.from(cursor, 'base64url').toString('utf8')) : null;
  // Re-encoding must give the same text: base64url decoding alone skips characters it does not know.
  if (!m || encodeCursor(m[1] as string) !== cursor || BigInt(m[1] as string) > 9_223_372_036_854_775_807n) {
    throw new InvalidParameterError('cursor', 'is not a cursor this API returned');
  }
  return m[1] as string;
}
