import type { ClaimedEvent, OutboxEvent, OutboxStatus } from './types.js';

export const OUTBOX_TABLE = 'exactly_once_outbox';
/** NOTIFY channel the insert trigger (migrations/0001) signals. */
export const OUTBOX_CHANNEL = 'exactly_once_outbox';

/** A row of exactly_once_outbox as pg returns it. */
export interface OutboxRow extends Record<string, unknown> {
  id: string;
  seq: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  payload: unknown;
  headers: Record<string, string>;
  metadata: Record<string, unknown>;
  tenant_id: string;
  queue: string | null;
  status: OutboxStatus;
  retry_count: number;
  max_retries: number | null;
  next_attempt_at: Date;
  last_error: string | null;
  created_at: Date;
  published_at: Date | null;
}

export function rowToEvent(row: OutboxRow): OutboxEvent {
  return {
    id: row.id,
    seq: String(row.seq),
    aggregateId: row.aggregate_id,
    aggregateType: row.aggregate_type,
    eventType: row.event_type,
    payload: row.payload,
    headers: row.headers,
    metadata: row.metadata,
    tenantId: row.tenant_id,
    queue: row.queue,
    status: row.status,
    retryCount: row.retry_count,
    maxRetries: row.max_retries,
    nextAttemptAt: row.next_attempt_at,
    lastError: row.last_error,
    createdAt: row.created_at,
    publishedAt: row.published_at,
  };
}

/** A row of the claim statement as pg returns it (bigints and JSON as text). */
export interface ClaimRow {
  seq: string;
  id: string;
  aggregate_type: string;
  aggregate_id: string;
  event_type: string;
  tenant_id: string;
  queue: string | null;
  retry_count: number;
  max_retries: number | null;
  created_at: Date;
  payload: string;
  headers: string;
  priority: string | null;
  traceparent: string | null;
  filepath: string | null;
  filesize: string | null;
}

export function toClaimed(r: ClaimRow): ClaimedEvent {
  return {
    seq: r.seq,
    id: r.id,
    aggregateType: r.aggregate_type,
    aggregateId: r.aggregate_id,
    eventType: r.event_type,
    tenantId: r.tenant_id,
    queue: r.queue,
    retryCount: r.retry_count,
    maxRetries: r.max_retries,
    createdAt: r.created_at,
    payload: r.payload,
    headers: r.headers,
    priority: r.priority,
    traceparent: r.traceparent,
    filepath: r.filepath,
    filesize: r.filesize,
  };
}
