import type { FastifyReply, FastifyRequest } from 'fastify';
import { FeatureDisabledError, InvalidParameterError } from '../errors.js';
import type { CleanupReport } from '../maintenance/run-cleanup.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Queryable } from '../outbox/inspect.js';
import type { AdminBackend, AdminIdempotency } from './backend.js';
import type { Readiness } from './readiness.js';

/** `write`: needs the token when one is set. `read`: needs it with `protect_reads`. `open`: never (probes). */
export type Access = 'write' | 'read' | 'open';

/** One endpoint: the plugin adds auth, the body limit, JSON errors and 405 for the methods not listed. */
export interface AdminRoute {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  access: Access;
  handler(request: FastifyRequest, reply: FastifyReply): Promise<unknown>;
}

/** What route handlers share. */
export interface AdminContext {
  manager: AdminBackend;
  metrics: Metrics | undefined;
  cleanup(type: 'idempotency' | 'outbox' | 'all'): Promise<CleanupReport>;
  /** Pool for the API's outbox reads: its own small one in the relay, so reads never wait for publishing or slow it. */
  readPool: Queryable;
  /** Postgres, Redis (a write) and, in a relay process, the relay's ability to publish. */
  readiness(): Promise<Readiness>;
}

export const API_PREFIX = '/api/v1/exactly-once';

/** The idempotency service, or 503 when the feature is off (or not set up in this process). */
export function requireIdempotency(ctx: AdminContext): AdminIdempotency {
  const service = ctx.manager.idempotency;
  if (!ctx.manager.config.idempotency.enabled || !service) throw new FeatureDisabledError('idempotency');
  return service;
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
