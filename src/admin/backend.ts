import type { Config } from '../config/load-config.js';
import type { SqlExecutor } from '../db/executor.js';
import type { CreateRecordInput, DedupStats, IdempotencyRecord } from '../idempotency/index.js';
import type { CleanupReport } from '../maintenance/run-cleanup.js';
import type { Metrics } from '../metrics/metrics.js';
import type { OutboxInspector } from '../outbox/inspector.js';
import type { HealthSource } from './readiness.js';

/** What the admin API needs of the idempotency service (`IdempotencyService` fits). */
export interface AdminIdempotency {
  getDedupStats(queueName: string, tenantId?: string): Promise<DedupStats>;
  getRecord(queueName: string, tenantId: string, keyId: string): Promise<IdempotencyRecord | undefined>;
  /** Throws `IdempotencyKeyExistsError` when a live record exists. */
  createRecord(input: CreateRecordInput): Promise<IdempotencyRecord>;
  /** `true` when a live record existed. */
  deleteRecord(queueName: string, tenantId: string, keyId: string): Promise<boolean>;
  /**
   * Whether the Redis hot cache holds the key's completed record; `null` when the store has no hot cache. Optional:
   * without it the API answers `cached: null`.
   */
  isCached?(queueName: string, tenantId: string, keyId: string): Promise<boolean | null>;
  cleanup(): Promise<number>;
}

/**
 * What the admin API needs of the Manager, structurally, so any object with these members can be mounted
 * (the `Manager` class is one).
 */
export interface AdminBackend {
  readonly config: Config;
  /** Postgres pool of the outbox (listing, replay, backlog, cleanup, readiness). */
  readonly pool: SqlExecutor;
  /** Redis client: readiness writes a tiny key with a short TTL (`SET key value PX ms`). */
  readonly redis: { set(key: string, value: string, mode: 'PX', ms: number): Promise<unknown> };
  /** Absent or `undefined` when idempotency is not set up in this process: those endpoints answer 503. */
  readonly idempotency?: AdminIdempotency | undefined;
  /**
   * The outbox's inspector (`Manager.outboxInspector`). Needed with `outbox.storage_type: redis`; without it the
   * outbox endpoints read the Postgres outbox.
   */
  readonly outboxInspector?: OutboxInspector | undefined;
  /** Publish every due event now; the summary is returned to the caller as JSON. */
  publishOutboxEvents(): Promise<object>;
}

export interface AdminOptions {
  manager: AdminBackend;
  /** Serves `/metrics`; absent (or `metrics.enabled: false`) means 503 there. */
  metrics?: Metrics | undefined;
  /** Bearer token for mutating endpoints. @defaultValue `admin.token` (env `ADMIN_TOKEN`) */
  token?: string | undefined;
  /** Require the token for reads (`GET` under `/api`, and `/metrics`) too. @defaultValue `admin.protect_reads` */
  protectReads?: boolean | undefined;
  /** Refuse every mutating endpoint with 403 `EO_ADMIN_READ_ONLY`. @defaultValue `admin.read_only` */
  readOnly?: boolean | undefined;
  /**
   * Host names the API answers to besides IP addresses and `localhost` (`.example.com`: with subdomains; `*`: any);
   * another `Host` gets 403 `EO_ADMIN_HOST_NOT_ALLOWED` (DNS rebinding). @defaultValue `admin.allowed_hosts`
   */
  allowedHosts?: readonly string[] | undefined;
  /** Largest request body in bytes; larger gets 413. @defaultValue `admin.body_limit` */
  bodyLimit?: number | undefined;
  /**
   * Also serve `/healthz`, `/readyz` and `/metrics` (turn off when mounting into an app that has its own).
   * @defaultValue true
   */
  probes?: boolean | undefined;
  /**
   * Pool for the API's outbox reads (`GET /outbox`). Give it a small pool of its own with a `statement_timeout`, so
   * operators' reads never wait for, or hold, the connections publishing needs. @defaultValue `manager.pool`
   */
  readPool?: SqlExecutor | undefined;
  /** The relay this process runs: `/readyz` is 503 while it cannot publish (its circuit breaker is open). */
  relay?: HealthSource | undefined;
  /** Runs cleanup for `POST /cleanup`. @defaultValue `runCleanup` in this process */
  cleanup?: ((type: 'idempotency' | 'outbox' | 'all') => Promise<CleanupReport>) | undefined;
}
