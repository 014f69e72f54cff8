import { FeatureDisabledError } from '../../errors.js';
import { CLEANUP_TYPES, type CleanupReport, type CleanupRequest } from '../../maintenance/run-cleanup.js';
import { HttpErrorCode } from '../http-errors.js';
import { type AdminContext, type AdminRoute, API_PREFIX, outboxInspector, requireNoBody } from '../route.js';
import { snakeKeys } from '../serialize.js';
import { Fields, noQuery } from '../validate.js';

/** `POST /cleanup` and `GET /health`. */
export function operationRoutes(ctx: AdminContext): AdminRoute[] {
  return [
    {
      method: 'POST',
      url: `${API_PREFIX}/cleanup`,
      access: 'write',
      async handler(request) {
        const type = new Fields(request.query, 'query', ['type']).oneOf('type', CLEANUP_TYPES, 'all') ?? 'all';
        requireNoBody(request.body);
        const report = await cleanup(ctx, type);
        return { type, ...(snakeKeys(report) as object) };
      },
    },
    {
      method: 'GET',
      url: `${API_PREFIX}/health`,
      access: 'read',
      async handler(request, reply) {
        noQuery(request.query);
        const { config } = ctx.manager;
        const readiness = await ctx.readiness();
        const body = {
          status: readiness.ready ? 'healthy' : 'unhealthy',
          timestamp: new Date().toISOString(),
          features: {
            idempotency: config.idempotency.enabled,
            outbox: config.outbox.enabled,
            metrics: config.metrics.enabled,
          },
          checks: readiness.checks,
        };
        if (readiness.ready) return body;
        return reply.status(503).send({ ...body, error: notReadyError(readiness.checks) });
      },
    },
  ];
}

/** `/healthz` (the process answers), `/readyz` (Postgres and Redis answer), `/metrics` (Prometheus). */
export function probeRoutes(ctx: AdminContext): AdminRoute[] {
  return [
    {
      method: 'GET',
      url: '/healthz',
      access: 'open',
      async handler() {
        return { status: 'ok' };
      },
    },
    {
      method: 'GET',
      url: '/readyz',
      access: 'open',
      async handler(_request, reply) {
        const readiness = await ctx.readiness();
        if (readiness.ready) return { status: 'ready', checks: readiness.checks };
        return reply
          .status(503)
          .send({ status: 'not_ready', checks: readiness.checks, error: notReadyError(readiness.checks) });
      },
    },
    {
      method: 'GET',
      url: '/metrics',
      access: 'read',
      anyHost: true,
      async handler(request, reply) {
        noQuery(request.query);
        const metrics = ctx.metrics;
        if (!metrics || !ctx.manager.config.metrics.enabled) throw new FeatureDisabledError('metrics');
        const text = await metrics.text();
        return reply.type(metrics.contentType).send(text);
      },
    },
  ];
}

/** `ctx.cleanup`, except that the Redis outbox (`outbox.storage_type: redis`) is cleaned in Redis, as the CLI does. */
async function cleanup(ctx: AdminContext, type: CleanupRequest): Promise<CleanupReport> {
  const { config } = ctx.manager;
  if (config.outbox.storageType !== 'redis' || !config.outbox.enabled || type === 'idempotency') {
    return ctx.cleanup(type);
  }
  const started = performance.now();
  let report: CleanupReport = { durationMs: 0 };
  if (type === 'all') {
    report = config.idempotency.enabled
      ? await ctx.cleanup('idempotency')
      : { durationMs: 0, skipped: [{ type: 'idempotency', reason: 'idempotency is disabled' }] };
  }
  try {
    report.outbox = await outboxInspector(ctx).cleanup(config.outbox.cleanupAfter);
    ctx.metrics?.cleanupRun('outbox', report.outbox.deleted, true);
  } catch (err) {
    ctx.metrics?.cleanupRun('outbox', 0, false);
    throw err;
  }
  report.durationMs = Math.round(performance.now() - started);
  return report;
}

function notReadyError(checks: Record<string, { ok: boolean; error?: string }>) {
  const failing = Object.entries(checks)
    .filter(([, c]) => !c.ok)
    .map(([name, c]) => `${name}: ${c.error ?? 'unreachable'}`);
  return { code: HttpErrorCode.notReady, message: `not ready (${failing.join('; ')})` };
}
