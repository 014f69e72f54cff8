import { z } from 'zod';
import { bearerTokenProblem } from './admin-token.js';
import { duration, MAX_INT_MS, positiveInt, TIMER } from './schema-rules.js';
import { worker } from './worker-schema.js';

export { MAX_INT_MS };

/**
 * The YAML schema of the reference document's (docs/reference-api.md) `exactly_once:` tree, plus the settings this implementation
 * needs (marked "added"). Every default lives here, next to the key it belongs to. Durations are parsed
 * into milliseconds; keys are renamed to camelCase by `toConfig` in load-config.ts.
 */

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
  /**
   * `exactly-once migrate` creates `idempotency_keys` only (migrations read no config); another name is a table you
   * create, with `<name>_stats`, from the DDL in docs/operations.md. @defaultValue "idempotency_keys"
   */
  table_name: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must be a lower-case SQL identifier (letters, digits, _)')
    .default('idempotency_keys'),
  /** @defaultValue 100 */
  batch_size: positiveInt(100),
  /** @defaultValue 10 */
  max_connections: positiveInt(10),
  /** Statement and idle timeout of a `processInTransaction` transaction. @defaultValue 30s */
  transaction_timeout: duration('30s', {
    zero: 'Postgres reads 0 as "no timeout", so a hung processor would hold its key\'s row lock forever',
    intMs: 'Postgres holds this timeout as an int of milliseconds',
  }),
  /** Added: answer completed keys from a Redis cache in front of the table. @defaultValue true */
  hot_cache: z.boolean().default(true),
});

const idempotency = z.strictObject({
  /** @defaultValue true */
  enabled: z.boolean().default(true),
  /** How long a key (and its stored result) is kept. Must be longer than `lease`. @defaultValue 24h */
  default_ttl: duration('24h', { zero: '0 would expire every key as it is written, so every redelivery runs again' }),
  /** @defaultValue "idempotency:" */
  key_prefix: z.string().default('idempotency:'),
  /** @defaultValue 1h */
  cleanup_interval: duration('1h', { zero: 'an interval of 0 is not a schedule' }),
  /**
   * Rows deleted per cleanup statement. With the `database` storage it also sets `storage.database.batch_size` when
   * that is not given. @defaultValue 100
   */
  batch_size: positiveInt(100),
  /** Added: how long an in-progress claim is honoured before another caller may take over. @defaultValue 30s */
  lease: duration('30s', {
    min: {
      ms: 100,
      why: 'a running processor renews its lease every third of it, and a shorter lease cannot be renewed in time, so a second caller takes the key and runs it again',
    },
    intMs: TIMER,
  }),
  /**
   * Added: how long a duplicate waits for the first caller's result. Shorter than `lease`: a duplicate behind a crashed
   * caller gives up (`EO_IDEMPOTENCY_IN_PROGRESS`, the queue redelivers it); longer: it waits and takes the key over.
   * Both are safe. @defaultValue 10s
   */
  wait_timeout: duration('10s', {
    zero: "0 makes a concurrent duplicate fail at once instead of getting the first caller's result",
    intMs: TIMER,
  }),
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
  initial_delay: duration('1s', {
    zero: '0 retries at once, again and again: max_retries is spent in milliseconds and the event is marked failed',
    intMs: 'the relay passes retry delays to Postgres as int milliseconds',
  }),
  /** At most 2^31-1 ms (about 24.8 days). @defaultValue 30m */
  max_delay: duration('30m', { intMs: 'the relay passes retry delays to Postgres as int milliseconds' }),
  /** @defaultValue 2.0 */
  multiplier: z.number().min(1, 'must be >= 1 (delays must not shrink)').default(2),
  /** Spread each delay over [delay/2, delay]. @defaultValue true */
  jitter: z.boolean().default(true),
});

/** Added: the relay's circuit breaker around publishing (src/outbox/circuit-breaker.ts). */
const circuitBreaker = z.strictObject({
  /** `false`: the relay keeps claiming and backing off through a Redis outage instead of pausing. @defaultValue true */
  enabled: z.boolean().default(true),
  /** Consecutive publish failures (Redis unreachable, timeout, READONLY, OOM) that open the circuit. @defaultValue 5 */
  failure_threshold: positiveInt(5),
  /** How long an open circuit stops claims before one trial batch may go through. @defaultValue 10s */
  open_for: duration('10s', {
    zero: '0 would let a trial batch through at once, every time: the breaker would never pause anything',
    intMs: TIMER,
  }),
});

/** The names pg-boss accepts for a queue (its `assertQueueName`); `{priority}` is filled in before the check. */
export const PG_BOSS_QUEUE_NAME = /^[\w.\-/]+$/;

/** Added: settings of the `pg-boss` publisher (src/publishers/pg-boss.ts). */
const pgBoss = z.strictObject({
  /**
   * pg-boss queue an event goes to unless it names its own `queue`; `{priority}` becomes `high` or `low`. pg-boss
   * accepts letters, digits and `_ - . /` only, so the list publisher's `jobqueue:...` names do not fit.
   * @defaultValue unset (`outbox.queue_pattern`, which must then be a valid pg-boss name)
   */
  queue: z.string().min(1).optional(),
  /** Postgres schema pg-boss lives in (installed or migrated by the relay's first publish). @defaultValue "pgboss" */
  schema: z
    .string()
    .regex(
      /^[a-z_][a-z0-9_]{0,49}$/,
      'must be a lower-case SQL identifier of at most 50 characters (letters, digits, _)',
    )
    .default('pgboss'),
  /**
   * `true`: the relay creates a missing queue with `queue_options`. `false`: an event for a missing queue fails (retried
   * with backoff, then `failed`, replayable once the queue exists) and the rest of its batch goes out. @defaultValue false
   */
  create_queues: z.boolean().default(false),
  /** pg-boss options of the queues the relay creates (`create_queues: true`); existing queues keep their own. */
  queue_options: z
    .strictObject({
      /**
       * `standard`, or `key_strict_fifo`: pg-boss runs one job per aggregate at a time, in order (the relay sets each
       * job's singletonKey to `<aggregate_type>:<aggregate_id>`). @defaultValue "standard"
       */
      policy: z.enum(['standard', 'key_strict_fifo']).default('standard'),
      /** pg-boss `retryLimit`: failed attempts retried before a job is failed (or dead-lettered). @defaultValue 2 */
      retry_limit: z.int().min(0).max(1_000_000).default(2),
      /** pg-boss `retryDelay`, rounded up to whole seconds. @defaultValue 0s */
      retry_delay: duration('0s', { zeroAllowed: true }),
      /** pg-boss `retryBackoff`: exponential backoff from `retry_delay`. @defaultValue false */
      retry_backoff: z.boolean().default(false),
      /** pg-boss `expireInSeconds`: an active job older than this is retried. At least 1s. @defaultValue 15m */
      expire_in: duration('15m', {
        min: { ms: 1000, why: 'pg-boss counts it in whole seconds, and at least one' },
      }),
      /** pg-boss `deadLetter`: queue that receives a job's copy once its retries are spent. @defaultValue unset */
      dead_letter: z
        .string()
        .regex(PG_BOSS_QUEUE_NAME, 'must be a pg-boss queue name (letters, digits, _ - . / only)')
        .optional(),
    })
    .prefault({}),
});

const outbox = z.strictObject({
  /** This project is a database-backed relay, so the outbox is on by default. @defaultValue true */
  enabled: z.boolean().default(true),
  /**
   * Where outbox events live. `database`: a Postgres table, written in your Kysely/pg transaction. `redis`: keys under
   * `outbox.redis.key_prefix`, written in your ioredis `multi()` (see README "The outbox in Redis"). @defaultValue "database"
   */
  storage_type: z.enum(['redis', 'database']).default('database'),
  /** Added: settings of the Redis outbox (`storage_type: redis`). */
  redis: z
    .strictObject({
      /**
       * Prefix of every outbox key. Keep one hash tag in it (`{...}`): every key then sits in one slot, as the relay's
       * scripts need on a Redis Cluster, where the destination lists must hash to the same slot.
       * @defaultValue "eo:{outbox}:"
       */
      key_prefix: z
        .string()
        .min(1)
        .refine((p) => !p.includes('\u0000'), 'must not contain the NUL character')
        .default('eo:{outbox}:'),
    })
    .prefault({}),
  /** Fallback poll when no NOTIFY arrives. @defaultValue 5s */
  poll_interval: duration('5s', {
    min: {
      ms: 10,
      why: 'each poll is a claim query, and a shorter interval makes an idle relay a busy loop on Postgres',
    },
    intMs: TIMER,
  }),
  /**
   * Events claimed per relay transaction (at most; a claim takes what is due). 500 drains a backlog about twice as fast
   * as 50 on the bench (docs/performance.md); each claim holds its rows and aggregates that much longer. @defaultValue 500
   */
  batch_size: positiveInt(500),
  /** Failed publish attempts retried before an event is marked `failed`. @defaultValue 5 */
  max_retries: z.int().min(0).default(5),
  /** @defaultValue 24h */
  cleanup_interval: duration('24h', { zero: 'an interval of 0 is not a schedule' }),
  /** Published and failed rows older than this are deleted by cleanup. @defaultValue 168h */
  cleanup_after: duration('168h', {
    zero: '0 would delete failed events at the next cleanup, before anyone could replay them',
  }),
  retry_backoff: retryBackoff.prefault({}),
  /**
   * Added: how long an idle high-water mark (one per outbox lane and destination, the Redis side of exactly-once) lives.
   * Must be longer than `claim_timeout`.
   * @defaultValue 24h
   */
  dedup_window: duration('24h', {
    min: { ms: 1000, why: 'a shorter window expires marks while their batch may still be uncommitted' },
  }),
  /** Added: Redis list a job goes to; `{priority}` becomes `high` or `low`. @defaultValue "jobqueue:{priority}_priority" */
  queue_pattern: z.string().min(1).default('jobqueue:{priority}_priority'),
  /**
   * Added: Redis keys an event may name in `queue`, besides the two lists `queue_pattern` produces (always allowed).
   * Patterns; `*` matches any run of characters, the rest is literal: `["orders:*", "emails"]`. An event naming any
   * other key is refused by `storeInOutbox` and by the relay. Names containing `:eo:hwm:` (high-water marks) or
   * `:eo:dedup:` (earlier versions' dedup markers) are never allowed, whatever the patterns say.
   * @defaultValue [] (events may name only the `queue_pattern` lists)
   */
  allowed_queues: z
    .array(
      z
        .string()
        .min(1)
        .refine((p) => !p.includes('\u0000'), 'must not contain the NUL character'),
    )
    .default([]),
  /**
   * Added: what the relay pushes to. `list`: LPUSH one go-redis-work-queue job JSON per event onto a list. `stream`:
   * XADD one entry per event, the job's fields as entry fields, onto a Redis Stream (consumer groups, XACK, replay).
   * Either way the key comes from `queue_pattern` or the event's `queue`, and the high-water mark and the push are one
   * script (exactly once); with `list` or `stream`, an event's `destination` header (`list` or `stream`) picks the other
   * kind for that event. `pg-boss`: one pg-boss job per event, inserted in the relay's own transaction that moves the
   * outbox's cursors (exactly once without marks; see `pg_boss`). @defaultValue "list"
   */
  publisher: z.enum(['list', 'stream', 'pg-boss']).default('list'),
  /** Added: settings of the `pg-boss` publisher. */
  pg_boss: pgBoss.prefault({}),
  /** Added: settings of the `stream` publisher. */
  stream: z
    .strictObject({
      /**
       * `MAXLEN ~ n` on every XADD: Redis trims the stream to about this many entries, oldest first, whether or not a
       * consumer group has read them. Unset: never trimmed (trim with XTRIM once entries are acknowledged, or bound
       * it here with room for your consumers' worst backlog). @defaultValue unset (no trimming)
       */
      maxlen: z.int().positive().optional(),
    })
    .prefault({}),
  /** Added: priority of events without a `priority` header. @defaultValue "low" */
  default_priority: z.enum(['high', 'low']).default('low'),
  /**
   * Added: claim loops per relay process, each with its own connection; 1..64 (more loops than that contend on the
   * same rows instead of adding throughput, and exhaust Postgres connections). @defaultValue 1
   */
  concurrency: z.int().min(1).max(64).default(1),
  /** Added: a relay transaction idle longer than this is rolled back by Postgres, releasing its claim. @defaultValue 30s */
  claim_timeout: duration('30s', {
    zero: '0 would roll back every batch before it is published',
    intMs: 'Postgres holds idle_in_transaction_session_timeout as an int of milliseconds',
  }),
  /** Added: a Redis publish slower than this fails the batch (it is retried). Below `claim_timeout`. @defaultValue 5s */
  publish_timeout: duration('5s', {
    min: {
      ms: 100,
      why: 'a timed-out publish counts as a Redis outage, and ordinary latency (a GC pause, an fsync) would stop all publishing',
    },
    intMs: TIMER,
  }),
  /** Added, Redis outbox only: the oldest due aggregates a claim looks at (the Postgres outbox claims by lane). @defaultValue 1000 */
  claim_window: positiveInt(1000),
  /**
   * Added: largest job (UTF-8 bytes of its JSON) the relay pushes; a larger event fails on its own (retried, then
   * `failed`) instead of failing its batch. Keep it below Redis's proto-max-bulk-len (read with CONFIG GET when
   * allowed) and well below your maxmemory headroom. @defaultValue 536870912 (Redis's default proto-max-bulk-len)
   */
  max_job_bytes: positiveInt(536_870_912),
  circuit_breaker: circuitBreaker.prefault({}),
});

const metrics = z.strictObject({
  /** @defaultValue true */
  enabled: z.boolean().default(true),
  /** How often backlog gauges are refreshed; 0 refreshes them on every scrape. @defaultValue 30s */
  collection_interval: duration('30s', { zeroAllowed: true }),
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
  /**
   * Added: bearer token for mutating endpoints (env `ADMIN_TOKEN`). Must be a valid Bearer credential (RFC 6750:
   * letters, digits, `-._~+/`, optional `=` padding); empty is refused rather than read as "no token". @defaultValue unset
   */
  token: z
    .string()
    .superRefine((token, ctx) => {
      const problem = bearerTokenProblem(token);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  /** Added: require the token for reads too. @defaultValue false */
  protect_reads: z.boolean().default(false),
  /** Added: largest accepted request body in bytes. @defaultValue 1048576 */
  body_limit: positiveInt(1_048_576),
  /**
   * Added: refuse every mutating admin endpoint (403 `EO_ADMIN_READ_ONLY`), whatever the token; the dashboard hides its
   * actions (env `ADMIN_READ_ONLY=true|false`). @defaultValue false
   */
  read_only: z.boolean().default(false),
  /**
   * Added: host names the admin API and the dashboard answer to, besides any IP address and `localhost` (env
   * `ADMIN_ALLOWED_HOSTS`, comma-separated). A request whose `Host` names anything else gets 403
   * `EO_ADMIN_HOST_NOT_ALLOWED`: a page of another site that points its own name at this server (DNS rebinding) must
   * not reach it. Names without scheme or port, any case; `.example.com` also allows every subdomain; `*` allows any
   * name (only behind a proxy that checks `Host` itself). `/metrics`, `/healthz` and `/readyz` answer any `Host`.
   * @defaultValue [] (IP addresses and localhost only)
   */
  allowed_hosts: z
    .array(
      z
        .string()
        .regex(
          /^(\*|\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?)$/,
          'must be a host name without scheme or port (e.g. "admin.example.com"), ".example.com" or "*"',
        ),
    )
    .default([]),
});

/**
 * A connection URL, checked here so a typo fails at start naming the key and the environment variable, instead of
 * a driver error much later (pg reads `not a url` as the host `base`). Passwords are never echoed.
 */
const serviceUrl = (fallbackUrl: string, protocols: string[], env: string, example: string) =>
  z
    .string()
    .min(1)
    .superRefine((value, ctx) => {
      // A leading '/' is a Unix socket directory (pg) or socket path (ioredis).
      if (value.startsWith('/')) return;
      let protocol: string | undefined;
      try {
        protocol = new URL(value).protocol;
      } catch {
        protocol = undefined;
      }
      if (protocol === undefined || !protocols.includes(protocol)) {
        ctx.addIssue({
          code: 'custom',
          message: `not a ${protocols[0]}// URL (env ${env} sets this key); expected e.g. ${example}`,
        });
      }
    })
    .default(fallbackUrl);

const connectTimeout = () =>
  duration('5s', {
    zero: '0 waits forever for a server that accepts the connection and never answers',
    intMs: TIMER,
  });

const database = z
  .strictObject({
    url: serviceUrl(
      'postgres://postgres:postgres@127.0.0.1:5432/postgres',
      ['postgres:', 'postgresql:', 'socket:'],
      'DATABASE_URL',
      'postgres://user:password@host:5432/database',
    ),
    /** Added: a new Postgres connection that is not ready within this fails (TCP connect and startup). @defaultValue 5s */
    connect_timeout: connectTimeout(),
    /**
     * Added: `statement_timeout` of the relay's and the operator commands' connections (migrations have none: an
     * index build may take long). The relay's claim and `processInTransaction` set their own. @defaultValue 30s
     */
    statement_timeout: duration('30s', {
      zero: 'Postgres reads 0 as "no timeout", so a statement stuck behind a lock would hold its connection forever',
      intMs: 'Postgres holds this timeout as an int of milliseconds',
    }),
  })
  .prefault({});

/**
 * Added: Redis Cluster (env `REDIS_CLUSTER_NODES`, comma-separated, sets `nodes`). Given, every Redis client of the
 * process (relay, idempotency stores, hot cache, admin) is an ioredis `Cluster` and `redis.url` must not be set.
 * The other keys are the few ioredis `ClusterOptions` that matter for a relay, under their ioredis names in snake_case.
 */
const redisCluster = z.strictObject({
  /**
   * Seed nodes, `redis://[user:password@]host:port` (or `rediss://`); the client discovers the rest. All nodes share
   * one scheme and credentials, and no database index (a cluster has only database 0). @defaultValue (required)
   */
  nodes: z
    .array(
      z
        .string()
        .min(1)
        .superRefine((value, ctx) => {
          const problem = clusterNodeProblem(value);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        }),
    )
    .min(1, 'needs at least one node, e.g. ["redis://127.0.0.1:7000"]'),
  /** ioredis `maxRedirections`: MOVED/ASK redirections followed per command before it fails. @defaultValue 16 */
  max_redirections: z.int().min(1).max(1000).default(16),
  /** ioredis `retryDelayOnFailover`: wait before re-sending a command whose node went away. @defaultValue 100ms */
  retry_delay_on_failover: duration('100ms', {
    zero: '0 re-sends at once, in a tight loop, while a failover runs',
    intMs: TIMER,
  }),
  /** ioredis `retryDelayOnClusterDown`: wait before re-sending a command refused with CLUSTERDOWN. @defaultValue 100ms */
  retry_delay_on_cluster_down: duration('100ms', {
    zero: '0 re-sends at once, in a tight loop, while the cluster is down',
    intMs: TIMER,
  }),
});

/** Why a cluster node URL cannot be used, or `undefined`. */
function clusterNodeProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'not a redis:// URL (env REDIS_CLUSTER_NODES sets these); expected e.g. redis://127.0.0.1:7000';
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    return 'not a redis:// URL (env REDIS_CLUSTER_NODES sets these); expected e.g. redis://127.0.0.1:7000';
  }
  if (!url.hostname) return 'needs a host, e.g. redis://127.0.0.1:7000';
  if (url.pathname.length > 1 && url.pathname !== '/0') {
    return `names database ${url.pathname.slice(1)}, but Redis Cluster has only database 0; drop the path`;
  }
  return undefined;
}

const redis = z
  .strictObject({
    /** Single Redis server. Env `REDIS_URL` wins. Must not be set together with `cluster`. @defaultValue "redis://127.0.0.1:6379" */
    url: serviceUrl('redis://127.0.0.1:6379', ['redis:', 'rediss:'], 'REDIS_URL', 'redis://host:6379'),
    /** Added: a Redis connection not established within this fails and is retried. @defaultValue 5s */
    connect_timeout: connectTimeout(),
    /** Added: Redis Cluster instead of the single server at `url`. @defaultValue unset (a single server) */
    cluster: redisCluster.optional(),
  })
  .prefault({});

export const exactlyOnceSchema = z.strictObject({
  idempotency: idempotency.prefault({}),
  outbox: outbox.prefault({}),
  metrics: metrics.prefault({}),
  /** Added: reaches docker-compose's Postgres and a local one on the standard port. Env `DATABASE_URL` wins. */
  database,
  /** Added. Env `REDIS_URL` wins. */
  redis,
  admin: admin.prefault({}),
  /** Added: the worker (`exactly-once worker`, `createWorker` from `exactly-once/worker`). */
  worker: worker.prefault({}),
});

export type RawConfig = z.output<typeof exactlyOnceSchema>;
