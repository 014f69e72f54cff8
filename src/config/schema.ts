import { z } from 'zod';
import { parseDuration } from './duration.js';

/**
 * The YAML schema of the reference document's `exactly_once:` tree, plus the settings this implementation
 * needs (marked "added"). Every default lives here, next to the key it belongs to. Durations are parsed
 * into milliseconds; keys are renamed to camelCase by `toConfig` in load-config.ts.
 */

const duration = (fallback: string) =>
  z
    .union([z.string(), z.number()])
    .transform((value, ctx) => {
      const ms = typeof value === 'number' ? (value === 0 ? 0 : undefined) : parseDuration(value);
      if (ms === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `invalid duration ${JSON.stringify(value)}; use a number with a unit: 500ms, 5s, 30m, 24h, 168h`,
        });
        return z.NEVER;
      }
      return ms;
    })
    .default(parseDuration(fallback) as number);

const positiveInt = (fallback: number) => z.int().positive().default(fallback);

const redisStorage = z.strictObject({
  /** Key of one idempotency record when `use_hashes` is false. @defaultValue "{queue}:idempotency:{tenant}:{key}" */
  key_pattern: z.string().min(1).default('{queue}:idempotency:{tenant}:{key}'),
  /** Hash that groups a queue+tenant's records when `use_hashes` is true. @defaultValue "{queue}:idempotency:{tenant}" */
  hash_key_pattern: z.string().min(1).default('{queue}:idempotency:{tenant}'),
  /** @defaultValue true */
  use_hashes: z.boolean().default(true),
  /** Compress stored results. @defaultValue false */
  compression: z.boolean().default(false),
});

const memoryStorage = z.strictObject({
  /** @defaultValue 10000 */
  max_keys: positiveInt(10_000),
  /** @defaultValue "fifo" */
  eviction_policy: z.enum(['fifo', 'lru']).default('fifo'),
});

const databaseStorage = z.strictObject({
  /** @defaultValue "idempotency_keys" */
  table_name: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier (letters, digits, _)')
    .default('idempotency_keys'),
  /** @defaultValue 100 */
  batch_size: positiveInt(100),
  /** @defaultValue 10 */
  max_connections: positiveInt(10),
  /** @defaultValue 30s */
  transaction_timeout: duration('30s'),
  /** Added: answer completed keys from a Redis cache in front of the table. @defaultValue true */
  hot_cache: z.boolean().default(true),
});

const idempotency = z.strictObject({
  /** @defaultValue true */
  enabled: z.boolean().default(true),
  /** @defaultValue 24h */
  default_ttl: duration('24h'),
  /** @defaultValue "idempotency:" */
  key_prefix: z.string().default('idempotency:'),
  /** @defaultValue 1h */
  cleanup_interval: duration('1h'),
  /** Rows deleted per cleanup statement. @defaultValue 100 */
  batch_size: positiveInt(100),
  /** Added: how long an in-progress claim is honoured before another caller may take over. @defaultValue 30s */
  lease: duration('30s'),
  /** Added: how long a duplicate waits for the first caller's result. @defaultValue 10s */
  wait_timeout: duration('10s'),
  storage: z
    .strictObject({
      /**
       * `database` is Postgres as the source of truth (with a Redis hot cache unless `database.hot_cache: false`).
       * @defaultValue "database"
       */
      type: z.enum(['redis', 'memory', 'database']).default('database'),
      redis: redisStorage.prefault({}),
      memory: memoryStorage.prefault({}),
      database: databaseStorage.prefault({}),
    })
    .prefault({}),
});

const retryBackoff = z.strictObject({
  /** @defaultValue 1s */
  initial_delay: duration('1s'),
  /** @defaultValue 30m */
  max_delay: duration('30m'),
  /** @defaultValue 2.0 */
  multiplier: z.number().min(1, 'must be >= 1 (delays must not shrink)').default(2),
  /** Spread each delay over [delay/2, delay]. @defaultValue true */
  jitter: z.boolean().default(true),
});

const outbox = z.strictObject({
  /** This project is a database-backed relay, so the outbox is on by default. @defaultValue true */
  enabled: z.boolean().default(true),
  /** Where outbox rows live. Only `database` can share your transaction. @defaultValue "database" */
  storage_type: z.enum(['redis', 'database']).default('database'),
  /** Fallback poll when no NOTIFY arrives. @defaultValue 5s */
  poll_interval: duration('5s'),
  /** Events claimed per relay transaction. @defaultValue 50 */
  batch_size: positiveInt(50),
  /** Failed publish attempts retried before an event is marked `failed`. @defaultValue 5 */
  max_retries: z.int().min(0).default(5),
  /** @defaultValue 24h */
  cleanup_interval: duration('24h'),
  /** Published and failed rows older than this are deleted by cleanup. @defaultValue 168h */
  cleanup_after: duration('168h'),
  retry_backoff: retryBackoff.prefault({}),
  /** Added: how long the Redis dedup marker of a published event lives. @defaultValue 24h */
  dedup_window: duration('24h'),
  /** Added: Redis list a job goes to; `{priority}` becomes `high` or `low`. @defaultValue "jobqueue:{priority}_priority" */
  queue_pattern: z.string().min(1).default('jobqueue:{priority}_priority'),
  /** Added: priority of events without a `priority` header. @defaultValue "low" */
  default_priority: z.enum(['high', 'low']).default('low'),
  /** Added: claim loops per relay process, each with its own connection. @defaultValue 1 */
  concurrency: positiveInt(1),
  /** Added: a relay transaction idle longer than this is rolled back by Postgres, releasing its claim. @defaultValue 30s */
  claim_timeout: duration('30s'),
  /** Added: a Redis publish slower than this fails the batch (it is retried). @defaultValue 5s */
  publish_timeout: duration('5s'),
  /** Added: rows of the oldest due events a claim looks at to find unlocked aggregates. @defaultValue 1000 */
  claim_window: positiveInt(1000),
});

const metrics = z.strictObject({
  /** @defaultValue true */
  enabled: z.boolean().default(true),
  /** How often backlog gauges are refreshed. @defaultValue 30s */
  collection_interval: duration('30s'),
  /** @defaultValue [0.001, 0.01, 0.1, 1, 10] */
  histogram_buckets: z
    .array(z.number().positive())
    .min(1)
    .refine((b) => b.every((v, i) => i === 0 || v > (b[i - 1] as number)), 'must be strictly increasing')
    .default([0.001, 0.01, 0.1, 1, 10]),
  /** Distinct values per label before the rest collapse into `other`. @defaultValue 1000 */
  cardinality_limit: positiveInt(1000),
});

const admin = z.strictObject({
  /** Added. @defaultValue true */
  enabled: z.boolean().default(true),
  /** Added: bind address; loopback unless you mean to expose it. @defaultValue "127.0.0.1" */
  host: z.string().min(1).default('127.0.0.1'),
  /** Added. @defaultValue 8080 */
  port: z.int().min(0).max(65535).default(8080),
  /** Added: bearer token for mutating endpoints (env `ADMIN_TOKEN`). @defaultValue unset */
  token: z.string().min(1).optional(),
  /** Added: require the token for reads too. @defaultValue false */
  protect_reads: z.boolean().default(false),
  /** Added: largest accepted request body in bytes. @defaultValue 1048576 */
  body_limit: positiveInt(1_048_576),
});

const connection = (fallbackUrl: string) =>
  z.strictObject({ url: z.string().min(1).default(fallbackUrl) }).prefault({});

export const exactlyOnceSchema = z.strictObject({
  idempotency: idempotency.prefault({}),
  outbox: outbox.prefault({}),
  metrics: metrics.prefault({}),
  /** Added: reaches docker-compose's Postgres and a local one on the standard port. Env `DATABASE_URL` wins. */
  database: connection('postgres://postgres:postgres@127.0.0.1:5432/postgres'),
  /** Added. Env `REDIS_URL` wins. */
  redis: connection('redis://127.0.0.1:6379'),
  admin: admin.prefault({}),
});

export type RawConfig = z.output<typeof exactlyOnceSchema>;
