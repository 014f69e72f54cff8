import { Redis } from 'ioredis';
import type { AdminBackend } from '../../src/admin/backend.js';
import { type AdminServerHandle, startAdminServer } from '../../src/admin/server.js';
import { type Config, configFromObject } from '../../src/config/load-config.js';
import { IdempotencyService } from '../../src/idempotency/index.js';
import { Manager } from '../../src/manager.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { createTestDatabase, deleteRedisPrefix, REDIS_URL, redisPrefix, type TestDatabase } from './services.js';

export interface AdminFixtureOptions {
  /** Merged over the test config, in YAML shape (`{ outbox: { enabled: false } }`). */
  config?: Record<string, unknown>;
  token?: string;
  protectReads?: boolean;
  bodyLimit?: number;
  /** Reuse a database (several servers over one database). */
  db?: TestDatabase;
  /** Redis URL for the backend (a dead port makes Redis unreachable). @defaultValue REDIS_URL */
  redisUrl?: string;
  /** Apply the migrations to the fresh database (false: an unmigrated database). @defaultValue true */
  migrate?: boolean;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests poke at response JSON freely
  json: any;
}

export interface RequestOptions {
  body?: unknown;
  /** Raw body text (sent as given). */
  raw?: string;
  token?: string;
  headers?: Record<string, string>;
}

export interface AdminFixture {
  db: TestDatabase;
  redis: Redis;
  prefix: string;
  config: Config;
  metrics: Metrics;
  manager: Manager;
  idempotency: IdempotencyService;
  backend: AdminBackend;
  server: AdminServerHandle;
  request(method: string, path: string, options?: RequestOptions): Promise<ApiResponse>;
  close(): Promise<void>;
}

/**
 * A real admin server on a free loopback port over a fresh database and a Redis prefix: the lead's Manager for
 * publishing, helper-1's IdempotencyService for keys, a Metrics registry fed by both.
 */
export async function adminFixture(label: string, options: AdminFixtureOptions = {}): Promise<AdminFixture> {
  const db = options.db ?? (await createTestDatabase(label, { migrate: options.migrate !== false }));
  const redis = new Redis(options.redisUrl ?? REDIS_URL, { maxRetriesPerRequest: 1, retryStrategy: () => 200 });
  redis.on('error', () => {});
  const prefix = redisPrefix(label);
  const config = configFromObject(
    merge(
      {
        database: { url: db.url },
        redis: { url: options.redisUrl ?? REDIS_URL },
        idempotency: { key_prefix: prefix, default_ttl: '1h' },
        outbox: {
          queue_pattern: `${prefix}jobqueue:{priority}_priority`,
          allowed_queues: [`${prefix}*`],
          max_retries: 0,
        },
        metrics: { collection_interval: 0 },
        admin: {
          ...(options.token ? { token: options.token } : {}),
          ...(options.protectReads ? { protect_reads: true } : {}),
          ...(options.bodyLimit ? { body_limit: options.bodyLimit } : {}),
        },
      },
      options.config ?? {},
    ),
  );
  const metrics = new Metrics({ config: config.metrics, pool: db.pool });
  const manager = new Manager(config, { pool: db.pool, redis, metrics });
  const idempotency = new IdempotencyService({ config, pool: db.pool, redis, metrics });
  metrics.trackStorageSize(idempotency);
  const backend: AdminBackend = {
    config,
    pool: db.pool,
    redis,
    idempotency,
    publishOutboxEvents: () => manager.publishOutboxEvents(),
  };
  const server = await startAdminServer({ manager: backend, metrics, host: '127.0.0.1', port: 0 });

  return {
    db,
    redis,
    prefix,
    config,
    metrics,
    manager,
    idempotency,
    backend,
    server,
    async request(method, path, o = {}) {
      const headers: Record<string, string> = { ...o.headers };
      if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
      let body: string | undefined;
      if (o.raw !== undefined) body = o.raw;
      else if (o.body !== undefined) {
        body = JSON.stringify(o.body);
        headers['content-type'] ??= 'application/json';
      }
      const res = await fetch(`${server.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      return { status: res.status, headers: res.headers, text, json };
    },
    async close() {
      await server.close();
      await idempotency.close();
      await manager.close();
      if (!options.redisUrl) await deleteRedisPrefix(redis, prefix);
      redis.disconnect();
      if (!options.db) await db.close();
    },
  };
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const cur = out[k];
    out[k] = isObject(v) && isObject(cur) ? merge(cur as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

function isObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
