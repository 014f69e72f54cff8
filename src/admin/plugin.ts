import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { AdminReadOnlyError } from '../errors.js';
import { runCleanup } from '../maintenance/run-cleanup.js';
import { bearerCheck, hostCheck, sameOriginCheck } from './auth.js';
import type { AdminOptions } from './backend.js';
import { HttpErrorCode, toHttpError } from './http-errors.js';
import { RateRecorder } from './rate-recorder.js';
import { checkReadiness } from './readiness.js';
import type { Access, AdminContext, AdminRoute } from './route.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { idempotencyRoutes } from './routes/idempotency.js';
import { operationRoutes, probeRoutes } from './routes/operations.js';
import { outboxRoutes } from './routes/outbox.js';
import { workerRoutes } from './routes/workers.js';

/** Methods a client might try; each path answers the ones it does not serve with 405 and `Allow`. */
const ALL_METHODS: HTTPMethods[] = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];

/**
 * The admin API as a fastify plugin: the reference document's (docs/reference-api.md) `/api/v1/exactly-once/*` endpoints, outbox inspection
 * and replay, and (unless `probes: false`) `/healthz`, `/readyz` and `/metrics`. Errors are JSON
 * `{ "error": { "code", "message" } }`; the plugin's error handler, body parser and auth apply to its own routes
 * only, so mounting it leaves the host app's behaviour alone.
 *
 * @example
 * const app = Fastify();
 * await app.register(exactlyOnceAdmin, { manager, metrics });
 * await app.listen({ port: 3000 });
 */
export async function exactlyOnceAdmin(app: FastifyInstance, options: AdminOptions): Promise<void> {
  const { manager } = options;
  const cfg = manager.config.admin;
  const token = options.token ?? cfg.token;
  const check = bearerCheck(token);
  const checkHost = hostCheck(options.allowedHosts ?? cfg.allowedHosts);
  const protectReads = options.protectReads ?? cfg.protectReads;
  const readOnly = options.readOnly ?? cfg.readOnly;
  const rates = options.metrics ? new RateRecorder(options.metrics) : undefined;
  rates?.start();
  app.addHook('onClose', async () => rates?.stop());
  const bodyLimit = options.bodyLimit ?? cfg.bodyLimit;
  const ctx: AdminContext = {
    manager,
    metrics: options.metrics,
    cleanup:
      options.cleanup ??
      ((type) =>
        runCleanup(
          { config: manager.config, pool: manager.pool, idempotency: manager.idempotency, metrics: options.metrics },
          type,
        )),
    readPool: options.readPool ?? manager.pool,
    // On the manager's pool, not the read pool: slow operator reads must never make a relay look down.
    readiness: () => checkReadiness(manager, options.relay),
    readOnly,
    auth: { writes: token !== undefined, reads: token !== undefined && protectReads },
    rates,
  };

  // Our own JSON parser: an empty body is "no body" (curl -X POST -H 'Content-Type: application/json' url), and a
  // body over the limit is refused while streaming in, before it is buffered whole.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      const error = Object.assign(new Error(`invalid JSON: ${(err as Error).message}`), {
        statusCode: 400,
        code: 'FST_ERR_CTP_INVALID_JSON_BODY',
      });
      done(error, undefined);
    }
  });

  app.setErrorHandler((err, request, reply) => {
    const { status, body } = toHttpError(err);
    if (status >= 500) request.log.error({ err, url: request.url }, 'admin request failed');
    else if (status === 401) request.log.warn({ url: request.url, method: request.method }, 'admin request refused');
    if (status === 401) void reply.header('www-authenticate', 'Bearer');
    return reply.status(status).send(body);
  });

  // A Host that is not this server's first (DNS rebinding: reads and writes; the probes and /metrics answer any Host,
  // since scrapers and orchestrators name the relay their own way and read nothing they could not read anyway). Then
  // writes: a foreign page (CSRF), the token, read-only mode, all before the body is read. A body that is not JSON
  // never acts: other types get 415 from fastify, text/plain parses to a string every handler refuses with 400.
  const authorize = (access: Access, anyHost: boolean) => async (request: FastifyRequest) => {
    if (access !== 'open' && !anyHost) checkHost(request.headers.host);
    if (access === 'write') sameOriginCheck(request.headers, request.protocol);
    if (access === 'write' || (access === 'read' && protectReads)) check(request.headers.authorization);
    if (access === 'write' && readOnly) throw new AdminReadOnlyError();
  };

  const routes: AdminRoute[] = [
    ...idempotencyRoutes(ctx),
    ...outboxRoutes(ctx),
    ...dashboardRoutes(ctx),
    ...workerRoutes(ctx),
    ...operationRoutes(ctx),
    ...(options.probes === false ? [] : probeRoutes(ctx)),
  ];
  const allowed = new Map<string, Set<HTTPMethods>>();
  for (const route of routes) {
    app.route({
      method: route.method,
      url: route.url,
      bodyLimit,
      onRequest: authorize(route.access, route.anyHost === true),
      handler: (request: FastifyRequest, reply: FastifyReply) => route.handler(request, reply),
    });
    const methods = allowed.get(route.url) ?? new Set<HTTPMethods>();
    methods.add(route.method);
    if (route.method === 'GET') methods.add('HEAD');
    allowed.set(route.url, methods);
  }
  // fastify answers an unrouted method with 404; for a path that exists, the right answer is 405 with Allow.
  for (const [url, methods] of allowed) {
    const allow = ALL_METHODS.filter((m) => methods.has(m));
    app.route({
      method: ALL_METHODS.filter((m) => !methods.has(m)),
      url,
      bodyLimit,
      handler: async (request, reply) =>
        reply
          .status(405)
          .header('allow', allow.join(', '))
          .send({
            error: {
              code: HttpErrorCode.methodNotAllowed,
              message: `${request.method} is not allowed on ${url}; use ${allow.join(', ')}`,
            },
          }),
    });
  }
}

// Let fastify know the plugin's hooks and handlers are deliberately encapsulated (no fastify-plugin wrapper), and
// give it a name for error messages.
Object.defineProperty(exactlyOnceAdmin, Symbol.for('fastify.display-name'), { value: 'exactly-once-admin' });
