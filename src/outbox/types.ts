import type pg from 'pg';
import type { PayloadPreview } from './payload-preview.js';

/** Lifecycle of an outbox row: `pending` until the relay pushes it, `failed` once retries are exhausted. */
export type OutboxStatus = 'pending' | 'published' | 'failed';

/** What an application hands to `storeInOutbox`. Only `aggregateId`, `eventType` and `payload` are required. */
export interface NewOutboxEvent {
  /**
   * A UUID of your choosing (e.g. to reference the event elsewhere), unique in the outbox; generated (UUIDv7) when
   * omitted. Stored and returned in lower case.
   */
  id?: string;
  /** The entity the event is about; events of one aggregate reach Redis in write order. */
  aggregateId: string;
  /** Entity type; part of the aggregate identity together with `aggregateId`. @defaultValue "" */
  aggregateType?: string;
  eventType: string;
  /** Any JSON-serialisable value. `filepath` / `filesize` fields, when present, fill the go-redis-work-queue job fields. */
  payload: unknown;
  /** String headers. `priority: high|low` picks the queue; `traceparent` (W3C) fills trace_id / span_id. */
  headers?: Record<string, string>;
  /** Stored with the event, not published. */
  metadata?: Record<string, unknown>;
  /** @defaultValue "" */
  tenantId?: string;
  /**
   * Redis list to push to instead of the one `queue_pattern` names. Must be allowed: one of the `queue_pattern` lists
   * or a match of `outbox.allowed_queues` (see src/outbox/allowed-queues.ts); never a key of the relay's own.
   */
  queue?: string;
  /** Overrides `outbox.max_retries` for this event; 0..2147483647. */
  maxRetries?: number;
}

/** A stored outbox row (the reference document's (docs/reference-api.md) OutboxEvent, plus the relay's bookkeeping). */
export interface OutboxEvent {
  id: string;
  /** Write order (a bigint, as a string so it never loses precision). */
  seq: string;
  aggregateId: string;
  aggregateType: string;
  eventType: string;
  payload: unknown;
  headers: Record<string, string>;
  metadata: Record<string, unknown>;
  tenantId: string;
  queue: string | null;
  status: OutboxStatus;
  retryCount: number;
  /** `null` means the relay's `outbox.max_retries`. */
  maxRetries: number | null;
  nextAttemptAt: Date;
  lastError: string | null;
  createdAt: Date;
  /**
   * When the event was pushed: the Redis outbox records it; the Postgres outbox, written once, does not (always
   * `null`; its per-minute traffic rows count what was pushed when).
   */
  publishedAt: Date | null;
  /**
   * Set, with `payload` left `undefined`, by a listing asked for previews (`list({ payload: 'preview' })`): the start
   * of the payload's JSON text and its size (src/outbox/payload-preview.ts).
   */
  payloadPreview?: PayloadPreview;
}

/** A row as the relay claims it: only what publishing needs, with JSON kept as text so it is never re-parsed. */
export interface ClaimedEvent {
  seq: string;
  id: string;
  aggregateType: string;
  aggregateId: string;
  eventType: string;
  tenantId: string;
  queue: string | null;
  retryCount: number;
  maxRetries: number | null;
  createdAt: Date;
  /** payload as JSON text */
  payload: string;
  /** headers as JSON text */
  headers: string;
  priority: string | null;
  traceparent: string | null;
  filepath: string | null;
  filesize: string | null;
  /**
   * Where the Postgres outbox's relay read the event: what the Redis high-water marks key on
   * (src/publishers/lua/publish-marks.lua). Absent: the event is written without a mark.
   */
  position?: EventPosition;
}

/**
 * An event's place in its lane's read order, which never changes once read (migrations/0009): `c`, an interval
 * event (epoch: the interval number k); `s`, a parked event taken by a batch (epoch: the lane's batch number b).
 */
export interface EventPosition {
  lane: number;
  kind: 'c' | 's';
  epoch: string;
  seq: string;
}

/** A lane's cursor as committed when a batch was claimed: its interval and the last seq handled in it. */
export interface LaneCursor {
  interval: string;
  pos: string | null;
}

/** What a publisher did with one event of a batch. */
export type PublishOutcome =
  | { kind: 'published' }
  /** Already pushed by an earlier attempt of the batch (its high-water mark says so); counts as published. */
  | { kind: 'duplicate' }
  /** Not attempted because an earlier event of the same aggregate failed in this batch; stays pending. */
  | { kind: 'held' }
  /** `permanent`: no retry can succeed (e.g. a destination the allow-list refuses); marked failed at once. */
  | { kind: 'failed'; error: string; permanent?: boolean };

/**
 * Pushes a claimed batch somewhere. Return one outcome per event, in order. Throw only when the whole batch could
 * not be attempted (connection lost, timeout): the relay then rolls back and backs off without counting a retry.
 */
export interface Publisher {
  publish(events: readonly ClaimedEvent[], options?: PublishOptions): Promise<PublishOutcome[]>;
  close?(): Promise<void>;
}

export interface PublishOptions {
  /**
   * `performance.now()` time after which the caller's claim may have been rolled back (its claim's idle timeout): a
   * push that would land later must not happen, because another relay may have published the event meanwhile.
   */
  deadline?: number;
  /**
   * The relay's claim transaction (a pg client after BEGIN). A transactional publisher (`outbox.publisher: pg-boss`)
   * writes its jobs on it, so they commit together with the rows marked published, or not at all; it must not COMMIT,
   * ROLLBACK or leave the transaction aborted (see src/publishers/pg-boss.ts for the SAVEPOINT it uses).
   */
  client?: pg.PoolClient;
  /**
   * The outbox's id (`exactly_once_outbox_meta.outbox_id`): part of every high-water mark's name, so two outboxes
   * that feed one destination never share a mark. Without it no mark is kept.
   */
  outboxId?: string;
  /** Each lane's committed cursor when the batch was claimed, so marks drop what Postgres has settled. */
  cursors?: ReadonlyMap<number, LaneCursor>;
}
