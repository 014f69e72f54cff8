import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metrics } from '../metrics/metrics.js';
import type { RedisClient } from '../redis.js';
import type { Worker } from '../worker/worker.js';

export interface WorkerHttp {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * `/metrics`, `/healthz` and `/readyz` of a worker process, on node:http: a worker serves three fixed paths to
 * Prometheus and an orchestrator, which needs no web framework. Ready: the worker runs and its Redis answers.
 */
export async function serveWorkerHttp(options: {
  host: string;
  port: number;
  worker: Worker;
  redis: RedisClient;
  metrics: Metrics | undefined;
}): Promise<WorkerHttp> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET') return json(405, { error: { code: 'EO_HTTP_METHOD', message: 'GET only' } });
    if (path === '/healthz') return json(200, { status: 'ok' });
    if (path === '/readyz') {
      const state = options.worker.state;
      const redis = options.redis.status === 'ready';
      const ready = state === 'running' && redis;
      return json(ready ? 200 : 503, { ready, worker: state, redis, ...options.worker.stats() });
    }
    if (path === '/metrics' && options.metrics) {
      const metrics = options.metrics;
      metrics.text().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.contentType });
          res.end(text);
        },
        () => json(500, { error: { code: 'EO_HTTP_INTERNAL', message: 'metrics unavailable' } }),
      );
      return;
    }
    json(404, { error: { code: 'EO_HTTP_NOT_FOUND', message: `no route GET ${path}` } });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
