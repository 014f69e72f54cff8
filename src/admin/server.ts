import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Config } from '../config/load-config.js';
import { AdminPortInUseError } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import type { AdminOptions } from './backend.js';
import { HttpErrorCode } from './http-errors.js';
import { exactlyOnceAdmin } from './plugin.js';
import { exactlyOnceUi } from './ui-plugin.js';

export interface AdminServerOptions extends AdminOptions {
  /** `admin.host` / `admin.port` / `admin.token` come from here. @defaultValue `manager.config` */
  config?: Config | undefined;
  /** Overrides `admin.host`. */
  host?: string | undefined;
  /** Overrides `admin.port`; 0 picks a free port. */
  port?: number | undefined;
  logger?: Logger | undefined;
  /** Serve the operator dashboard at `/` (assets under `/ui/`). @defaultValue true */
  ui?: boolean | undefined;
}

export interface AdminServerHandle {
  /** `http://host:port`, with the port actually bound. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The fastify instance, to add routes of your own. */
  readonly app: FastifyInstance;
  /** Stop accepting connections and wait for requests in flight. Safe to call twice. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * Serve the admin API, `/metrics`, `/healthz` and `/readyz` on one port (default `admin.host:admin.port`,
 * loopback:8080). Unknown paths answer a JSON 404 too.
 *
 * @example
 * await using admin = await startAdminServer({ manager, metrics, logger, port: 8080 });
 * console.log(`admin API on ${admin.url}`);
 */
export async function startAdminServer(options: AdminServerOptions): Promise<AdminServerHandle> {
  const config = options.config ?? options.manager.config;
  const host = options.host ?? config.admin.host;
  const port = options.port ?? config.admin.port;
  const logger = (options.logger ?? silentLogger).child({ component: 'admin' });
  const token = options.token ?? config.admin.token;
  if (!LOOPBACK.has(host) && token === undefined) {
    logger.warn({ host }, 'admin API bound beyond loopback without a token: anyone who reaches it can write');
  }

  const app = Fastify({
    loggerInstance: logger as FastifyServerOptions['loggerInstance'],
    ...requestLogOff(),
    bodyLimit: options.bodyLimit ?? config.admin.bodyLimit,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    frameworkErrors: (err, _request, reply) => {
      // Malformed URLs and the like, before routing: still our JSON shape.
      const body = { error: { code: HttpErrorCode.badRequest, message: err.message || 'malformed request' } };
      void (reply as unknown as { code(n: number): { send(b: unknown): unknown } }).code(400).send(body);
    },
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({
      error: { code: HttpErrorCode.notFound, message: `no route ${request.method} ${request.url.split('?')[0]}` },
    }),
  );
  await app.register(exactlyOnceAdmin, { ...options, config: undefined, token } as AdminOptions);
  if (options.ui !== false) {
    await app.register(exactlyOnceUi, { allowedHosts: options.allowedHosts ?? config.admin.allowedHosts });
  }
  try {
    await app.listen({ host, port });
  } catch (err) {
    // The plugins registered above hold timers and connections of their own: close them with the server.
    await app.close().catch(() => {});
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new AdminPortInUseError(host, port, { cause: err });
    throw err;
  }

  const address = app.server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  logger.info({ host: address.address, port: address.port }, 'admin API listening');
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= app.close();
    return closed;
  };
  return {
    url: `http://${shownHost}:${address.port}`,
    host: address.address,
    port: address.port,
    app,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** Per-request info logs would log every Prometheus scrape; errors are logged by the plugin's error handler. */
function requestLogOff(): Partial<FastifyServerOptions> {
  const LogController = (Fastify as unknown as { LogController?: new (o: object) => unknown }).LogController;
  return LogController
    ? ({ logController: new LogController({ disableRequestLogging: true }) } as Partial<FastifyServerOptions>)
    : { disableRequestLogging: true };
}
