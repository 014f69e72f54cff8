import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type Config, configFromObject } from '../../src/config/load-config.js';
import { testRedis } from './idempotency-env.js';
import { createTestDatabase, deleteRedisPrefix, REDIS_URL, redisPrefix, type TestDatabase } from './services.js';

/** One test file's database, Redis prefix and worker config tree (test-sized timings), and the keys it uses. */
export interface WorkerEnv {
  db: TestDatabase;
  redis: Redis;
  prefix: string;
  /** `<prefix>jobqueue:` */
  keyPrefix: string;
  high: string;
  low: string;
  deadLetter: string;
  completed: string;
  /** The `exactly_once` tree; `config()` validates it with overrides. */
  tree(overrides?: Record<string, unknown>): Record<string, unknown>;
  config(overrides?: Record<string, unknown>): Config;
  close(): Promise<void>;
}

export async function workerEnv(label: string): Promise<WorkerEnv> {
  const db = await createTestDatabase(label);
  const redis = testRedis();
  const prefix = redisPrefix(label);
  const keyPrefix = `${prefix}jobqueue:`;
  const tree = (overrides: Record<string, unknown> = {}) => {
    const worker = (overrides.worker as Record<string, unknown> | undefined) ?? {};
    const idempotency = (overrides.idempotency as Record<string, unknown> | undefined) ?? {};
    return {
      ...overrides,
      database: { url: db.url },
      redis: { url: REDIS_URL },
      outbox: { queue_pattern: `${keyPrefix}{priority}_priority` },
      idempotency: { key_prefix: `${prefix}idem:`, lease: '2s', wait_timeout: '1s', ...idempotency },
      worker: {
        key_prefix: keyPrefix,
        heartbeat_ttl: '2s',
        block_timeout: '200ms',
        reaper_interval: '500ms',
        backoff: { base: '20ms', max: '100ms' },
        shutdown_timeout: '10s',
        ...worker,
      },
    };
  };
  return {
    db,
    redis,
    prefix,
    keyPrefix,
    high: `${keyPrefix}high_priority`,
    low: `${keyPrefix}low_priority`,
    deadLetter: `${keyPrefix}dead_letter`,
    completed: `${keyPrefix}completed`,
    tree,
    config: (overrides) => configFromObject(tree(overrides)),
    async close() {
      await deleteRedisPrefix(redis, prefix);
      redis.disconnect();
      await db.close();
    },
  };
}

/** A job as the relay pushes it (src/publishers/job.ts), with the event riding along. */
export function relayJob(fields: { id?: string; priority?: 'high' | 'low'; payload?: unknown; tenant?: string } = {}) {
  const id = fields.id ?? randomUUID();
  return JSON.stringify({
    id,
    filepath: '',
    filesize: 0,
    priority: fields.priority ?? 'low',
    retries: 0,
    creation_time: new Date().toISOString(),
    trace_id: '',
    span_id: '',
    event_type: 'order.created',
    aggregate_type: 'order',
    aggregate_id: `o-${id}`,
    tenant_id: fields.tenant ?? '',
    payload: fields.payload ?? { n: 1 },
    headers: {},
  });
}

/** Every key matching `pattern`: a whole SCAN (one page covers only part of a keyspace shared with other runs). */
export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 5000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}
