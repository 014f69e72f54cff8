import type { DedupStats, IdempotencyRecord } from '../idempotency/index.js';
import type { FailedGroup, HeldAggregate, OverviewBacklog } from '../outbox/insights.js';
import type { OutboxBacklog } from '../outbox/inspect.js';
import type { OutboxEvent } from '../outbox/types.js';

// The reference document's (docs/reference-api.md) JSON is snake_case; the library's objects are camelCase. These are the only places that
// translate, field by field, so user data (payloads, stored values) is never renamed.

/** The document's `GET /stats` response. */
export function dedupStatsJson(stats: DedupStats) {
  return {
    queue_name: stats.queueName,
    tenant_id: stats.tenantId,
    total_keys: stats.totalKeys,
    hit_rate: stats.hitRate,
    total_requests: stats.totalRequests,
    duplicates_avoided: stats.duplicatesAvoided,
    last_updated: stats.lastUpdated?.toISOString() ?? null,
  };
}

export function recordJson(record: IdempotencyRecord) {
  return {
    queue_name: record.queueName,
    tenant_id: record.tenantId,
    key_id: record.keyId,
    status: record.status,
    value: record.result,
    created_at: record.createdAt.toISOString(),
    expires_at: record.expiresAt.toISOString(),
    lease_expires_at: record.leaseExpiresAt?.toISOString() ?? null,
  };
}

/**
 * An outbox event as the API sends it. A listing's event (with `payloadPreview`) carries `payload_preview` (the start
 * of the payload's JSON text, at most 1 KiB), `payload_bytes` and `payload_truncated` instead of `payload`; one event
 * (`GET /outbox/events/:id`) carries the whole `payload`.
 */
export function outboxEventJson(event: OutboxEvent) {
  const preview = event.payloadPreview;
  const payload = preview
    ? { payload_preview: preview.text, payload_bytes: preview.bytes, payload_truncated: preview.truncated }
    : { payload: event.payload };
  return {
    id: event.id,
    seq: event.seq,
    aggregate_type: event.aggregateType,
    aggregate_id: event.aggregateId,
    event_type: event.eventType,
    tenant_id: event.tenantId,
    queue: event.queue,
    status: event.status,
    retry_count: event.retryCount,
    max_retries: event.maxRetries,
    next_attempt_at: event.nextAttemptAt.toISOString(),
    last_error: event.lastError,
    created_at: event.createdAt.toISOString(),
    published_at: event.publishedAt?.toISOString() ?? null,
    ...payload,
    headers: event.headers,
    metadata: event.metadata,
  };
}

export function backlogJson(backlog: OutboxBacklog) {
  return {
    pending: backlog.pending,
    failed: backlog.failed,
    oldest_pending_age_seconds: backlog.oldestPendingAgeSeconds,
  };
}

export function overviewBacklogJson(b: OverviewBacklog) {
  return {
    pending: b.pending,
    due: b.due,
    retrying: b.retrying,
    failed: b.failed,
    oldest_pending_age_seconds: b.oldestPendingAgeSeconds,
  };
}

export function heldAggregateJson(h: HeldAggregate) {
  return {
    aggregate_type: h.aggregateType,
    aggregate_id: h.aggregateId,
    waiting: h.waiting,
    blocking: {
      id: h.blocking.id,
      seq: h.blocking.seq,
      status: h.blocking.status,
      event_type: h.blocking.eventType,
      retry_count: h.blocking.retryCount,
      last_error: h.blocking.lastError,
      next_attempt_at: h.blocking.nextAttemptAt.toISOString(),
    },
  };
}

export function failedGroupJson(g: FailedGroup) {
  return {
    error: g.error,
    count: g.count,
    first_at: g.firstAt.toISOString(),
    last_at: g.lastAt.toISOString(),
    sample_ids: g.sampleIds,
  };
}

/** camelCase keys of a flat summary object (`PublishSummary`, cleanup reports) to snake_case, recursively. */
export function snakeKeys(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), snakeKeys(v)]),
  );
}
