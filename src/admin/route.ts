import type { FastifyReply, FastifyRequest } from 'fastify';
import type { SqlExecutor } from '../db/executor.js';
import { FeatureDisabledError, InvalidParameterError } from '../errors.js';
import type { CleanupReport } from '../maintenance/run-cleanup.js';
import type { Metrics } from '../metrics/metrics.js';
import { type OutboxInspector, postgresOutboxInspector } from '../outbox/inspector.js';
import type { AdminBackend, AdminIdempotency } from './backend.js';
import type { RateRecorder } from './rate-recorder.js';
import type { Readiness } from './readiness.js';

/** `write`: needs the token when one is set. `read`: needs it with `protect_reads`. `open`: never (probes). */
export type Access = 'write' | 'read' | 'open';

/** One endpoint: the plugin adds auth, the body limit, JSON errors and 405 for the methods not listed. */
export interface AdminRoute {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  access: Access;
  /**
   * Answers whatever `Host` a request names (`/metrics`: Prometheus names targets its own way). Every other route
   * refuses a `Host` that is not this server's (`hostCheck`, DNS rebinding); `open` routes never check it.
   */
  anyHost?: true;
  handler(request: FastifyRequest, reply: FastifyReply): Promise<unknown>;
}

/** What route handlers share. */
export interface AdminContext {
  manager: AdminBackend;
  metrics: Metrics | undefined;
  cleanup(type: 'idempotency' | 'outbox' | 'all'): Promise<CleanupReport>;
  /** Pool for the API's outbox reads: its own small one in the relay, so reads never wait for publishing or slow it. */
  readPool: SqlExecutor;
  /** Postgres, Redis (a write) and, in a relay process, the relay's ability to publish. */
  readiness(): Promise<Readiness>;
  /** `admin.read_only`: every write endpoint answers 403 (the plugin enforces it; `/overview` reports it). */
  readOnly: boolean;
  /** Whether a token is required for writes, and for reads. */
  auth: { writes: boolean; reads: boolean };
  /** Retries and deaths per minute of this process's relay; absent without metrics. */
  rates: RateRecorder | undefined;
}

export const API_PREFIX = '/api/v1/exactly-once';

/** The idempotency service, or 503 when the feature is off (or not set up in this process). */
export function requireIdempotency(ctx: AdminContext): AdminIdempotency {
  const service = ctx.manager.idempotency;
  if (!ctx.manager.config.idempotency.enabled || !service) throw new FeatureDisabledError('idempotency');
  return service;
}

/**
 * What the outbox endpoints read and replay through: the manager's inspector when its outbox is in Redis
 * (`outbox.storage_type: redis`), else the Postgres outbox with reads on `readPool`.
 */
export function outboxInspector(ctx: AdminContext): OutboxInspector {
  const own = ctx.manager.outboxInspector;
  if (own && own.storage !== 'database') return own;
  return postgresOutboxInspector({ read: ctx.readPool, write: ctx.manager.pool });
}

export function requireOutbox(ctx: AdminContext): void {
  if (!ctx.manager.config.outbox.enabled) throw new FeatureDisabledError('outbox');
}

/**
 * Endpoints that act without input refuse a body, so a client that meant another endpoint (or sent garbage) gets a
 * 400 instead of an action it did not ask for. An empty body, `null` or `{}` is fine.
 */
export function requireNoBody(body: unknown): void {
  if (body === undefined || body === null) return;
  if (typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 0) return;
  throw new InvalidParameterError('body', 'this endpoint takes no body');
}
