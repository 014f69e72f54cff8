import type pg from 'pg';
import { type OperationsHandle, startOperations } from '../../admin/start-operations.js';
import { parseDuration } from '../../config/duration.js';
import type { Config } from '../../config/load-config.js';
import { postgresUses } from '../../config/postgres-use.js';
import { redisUses } from '../../config/redis-use.js';
import { createPool, poolTimeouts, postgresTarget } from '../../db/pool.js';
import { FeatureDisabledError } from '../../errors.js';
import { Manager, type OutboxRelay } from '../../manager.js';
import { Metrics } from '../../metrics/metrics.js';
import { TestFault } from '../../outbox/fault-injection.js';
import { refuseEvictingRedis } from '../../outbox/redis/eviction-policy.js';
import { RedisOutboxInspector } from '../../outbox/redis/inspector.js';
import { createRedisClient, type RedisClient, redisConfigTarget } from '../../redis.js';
import { redisDurabilityWarning } from '../../redis-persistence.js';
import { type Command, intFlag, parseFlags, UsageError } from '../command.js';
import { cliContext } from '../context.js';
import { checkConnectionBudget, reportRedisPersistence, waitForPostgres, waitForRedis } from '../relay-startup.js';

const MAX_CONCURRENCY = 64;
const DEFAULT_WAIT_MS = 30_000;

const USAGE = `Usage: exactly-once relay [--config FILE] [--concurrency N] [--port N] [--host ADDR] [--wait DURATION]

Runs the relay daemon: moves committed outbox events into Redis, exactly once, in per-aggregate order.
Wakes on LISTEN/NOTIFY (Redis outbox: its doorbell channel); outbox.poll_interval is the fallback. SIGTERM or SIGINT finishes the batch in
flight and exits 0. Run as many as you like, on any machines.

On the same port it serves the admin API (/api/v1/exactly-once/*), /metrics, /healthz and /readyz,
and it takes part in the cluster-wide cleanup schedule (a Postgres timetable: one replica runs each tick).
With outbox.storage_type: redis and no idempotency keys in Postgres, it never connects to Postgres; with
outbox.publisher: pg-boss and no idempotency keys or cache in Redis, it never connects to Redis.

  --concurrency N   claim loops in this process, 1..${MAX_CONCURRENCY} (outbox.concurrency)
  --port N          admin/metrics port, 0..65535 (admin.port, default 8080; 0 picks a free one)
  --host ADDR       admin bind address (admin.host, default 127.0.0.1)
  --wait DURATION   how long to wait at start for Postgres and Redis to answer, e.g. 30s (default); 0 tries once`;

/** How long a shutdown may take before we give up on the batch in flight (its claim is rolled back by Postgres). */
const SHUTDOWN_GRACE_MS = 10_000;
/**
 * The admin API's own pool: operators' reads (`GET /outbox?limit=1000`, twenty at once) queue here instead of taking
 * the connections the claim loops need, and a read stuck behind a lock gives up after the statement timeout.
 */
const ADMIN_POOL = { max: 2, statementTimeoutMs: 5000 };
/** Connections of the cleanup scheduler (its pool in maintenance/scheduler.ts, `max: 2`). */
const SCHEDULER_CONNECTIONS = 2;

interface RelayFlags {
  concurrency: number | undefined;
  port: number | undefined;
  host: string | undefined;
  waitMs: number;
}

export const relayCommand: Command = {
  name: 'relay',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      concurrency: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      wait: { type: 'string' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const flags = relayFlags(values);
    const ctx = cliContext(values);
    const config =
      flags.concurrency === undefined
        ? ctx.config
        : { ...ctx.config, outbox: { ...ctx.config.outbox, concurrency: flags.concurrency } };
    if (!config.outbox.enabled) throw new FeatureDisabledError('outbox');
    const logger = ctx.logger.child({ component: 'cli' });
    const concurrency = config.outbox.concurrency;
    // Nothing of this config in Postgres (the outbox and idempotency keys in Redis): no check, budget or timetable
    // there. The pools below are still created, but a pg pool connects only when queried, and nothing queries them.
    const usesPostgres = postgresUses(config).length > 0;
    // Likewise Redis: a relay that publishes to pg-boss, with no idempotency keys or cache in Redis, never connects.
    const usesRedis = redisUses(config).length > 0;
    logger.info(
      {
        config: ctx.file ?? null,
        database: usesPostgres ? postgresTarget(config.database.url) : 'not used',
        redis: usesRedis ? redisConfigTarget(config.redis) : 'not used',
        outboxStorage: config.outbox.storageType,
        publisher: config.outbox.publisher,
        concurrency,
      },
      'relay starting',
    );
    if (!usesPostgres) {
      logger.info(
        { outboxStorage: config.outbox.storageType, idempotencyStorage: config.idempotency.storage.type },
        'Postgres is not used: the outbox is in Redis and no idempotency keys are in Postgres',
      );
    }
    if (!usesRedis) {
      logger.info(
        { publisher: config.outbox.publisher, idempotencyStorage: config.idempotency.storage.type },
        'Redis is not used: events go to pg-boss and no idempotency keys or cache are in Redis',
      );
    }

    // Claim loops, probes and cleanup on one pool; admin reads and the backlog gauges on their own (see ADMIN_POOL).
    const timeouts = poolTimeouts(config.database);
    const relayPoolSize = concurrency + 2;
    const pool = createPool(config.database.url, ctx.logger, {
      ...timeouts,
      max: relayPoolSize,
      application_name: 'exactly-once relay',
    });
    const adminPool: pg.Pool = createPool(config.database.url, ctx.logger, {
      ...timeouts,
      ...ADMIN_POOL,
      statementTimeoutMs: Math.min(ADMIN_POOL.statementTimeoutMs, config.database.statementTimeout),
      application_name: 'exactly-once admin',
    });
    // Created only when used: an ioredis client connects (and logs its failures) as soon as it exists.
    const redis = usesRedis ? createRedisClient(config.redis, ctx.logger) : undefined;
    let manager: Manager | undefined;
    let relay: OutboxRelay | undefined;
    let ops: OperationsHandle | undefined;
    // One stop, whoever asks first (a signal, then the release below): the relay is stopped, and says so, once.
    let stopping: Promise<void> | undefined;
    const stopRelay = (r: OutboxRelay) => {
      stopping ??= r.stop();
      return stopping;
    };
    const release = async () => {
      if (relay) await stopRelay(relay).catch((err) => logger.warn({ err }, 'error while stopping'));
      await ops?.close().catch((err) => logger.warn({ err }, 'error while closing the admin server'));
      await manager?.close();
      redis?.disconnect();
      await Promise.allSettled([pool.end(), adminPool.end()]);
    };

    const starting = new AbortController();
    const stopped = new Promise<number>((resolve) => {
      let signalled = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (signalled) {
          logger.warn({ signal }, 'second signal: exiting now');
          process.exit(1);
        }
        signalled = true;
        if (!relay) {
          logger.info({ signal }, 'stopping before the relay started');
          starting.abort(new StartAborted());
          resolve(0);
          return;
        }
        logger.info({ signal }, 'shutting down: finishing the batch in flight');
        const force = setTimeout(() => {
          logger.error('shutdown took too long; exiting (the open claim is rolled back by Postgres)');
          process.exit(1);
        }, SHUTDOWN_GRACE_MS);
        force.unref();
        stopRelay(relay)
          .then(() => resolve(0))
          .catch((err) => {
            logger.error({ err }, 'error while stopping');
            resolve(1);
          });
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    });

    try {
      await waitForServices(
        usesPostgres ? config.database.url : undefined,
        redis ? { client: redis, target: redisConfigTarget(config.redis) } : undefined,
        config,
        {
          waitMs: flags.waitMs,
          logger,
          signal: starting.signal,
        },
      );
      if (usesPostgres) {
        await checkConnectionBudget(
          pool,
          { relayPool: relayPoolSize, adminPool: ADMIN_POOL.max, listen: 1, scheduler: SCHEDULER_CONNECTIONS },
          concurrency,
          logger,
        );
      }
      const metrics = config.metrics.enabled
        ? new Metrics({
            config: config.metrics,
            pool: adminPool,
            logger: ctx.logger,
            // The Redis outbox's backlog lives in Redis (src/outbox/redis/); the gauges read it there.
            ...(redis && config.outbox.storageType === 'redis'
              ? { backlog: () => new RedisOutboxInspector(redis, config.outbox).backlog() }
              : {}),
          })
        : undefined;
      if (redis && config.outbox.storageType === 'redis') await refuseEvictingRedis(redis);
      // Warn only of what the config keeps in Redis (G1): jobs the relay pushes there, a Redis outbox, Redis keys.
      const durability = redisDurabilityWarning(config);
      if (redis && durability !== undefined) {
        await reportRedisPersistence(redis, config.redis.url, logger, durability, (target, durable) =>
          metrics?.redisPersistence(target, durable),
        );
      }
      manager = new Manager(config, {
        pool,
        ...(redis ? { redis } : {}),
        logger: ctx.logger,
        ...(metrics ? { metrics } : {}),
      });
      // The crash switch of the crash tests (EXACTLY_ONCE_TEST_FAULT): read here, never inside the library.
      const testFault = TestFault.fromEnv(process.env, logger);
      const created = manager.createOutboxRelay(testFault ? { testFault } : {});
      await created.start();
      relay = created;
      ops = await startOperations({
        manager,
        metrics,
        logger: ctx.logger,
        host: flags.host,
        port: flags.port,
        relay,
        readPool: adminPool,
        // The timetable lives in Postgres; without it the Redis outbox's relay cleans the outbox itself, and Redis
        // idempotency keys expire by their TTL.
        ...(usesPostgres ? {} : { maintenance: false }),
      });
      if (ops.admin) logger.info({ url: ops.admin.url }, 'admin API, /metrics, /healthz and /readyz listening');
    } catch (err) {
      await release();
      if (err instanceof StartAborted) return 0;
      throw err;
    }
    const code = await stopped;
    await release();
    return code;
  },
};

class StartAborted extends Error {}

/** Both services at once (each only when used), one deadline; the first to give up stops the other wait. */
async function waitForServices(
  databaseUrl: string | undefined,
  redis: { client: RedisClient; target: string } | undefined,
  config: Config,
  options: { waitMs: number; logger: ReturnType<typeof cliContext>['logger']; signal: AbortSignal },
): Promise<void> {
  const inner = new AbortController();
  const onOuter = () => inner.abort(options.signal.reason);
  options.signal.addEventListener('abort', onOuter, { once: true });
  const wait = { deadline: Date.now() + options.waitMs, waitMs: options.waitMs, logger: options.logger };
  try {
    await Promise.all(
      [
        databaseUrl === undefined
          ? Promise.resolve()
          : waitForPostgres(databaseUrl, config.database.connectTimeout, { ...wait, signal: inner.signal }),
        redis === undefined
          ? Promise.resolve()
          : waitForRedis(redis.client, redis.target, {
              ...wait,
              signal: inner.signal,
              attemptMs: config.redis.connectTimeout,
            }),
      ].map((p) =>
        p.catch((err: unknown) => {
          inner.abort(err);
          throw err;
        }),
      ),
    );
  } catch (err) {
    // The service that failed first, not the abort it caused in the other wait.
    throw options.signal.aborted ? options.signal.reason : (inner.signal.reason ?? err);
  } finally {
    options.signal.removeEventListener('abort', onOuter);
  }
}

function relayFlags(values: Record<string, string | boolean | undefined>): RelayFlags {
  const text = (name: string) => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const host = text('host');
  if (host !== undefined && host.trim() === '') throw new UsageError('--host needs an address, e.g. 127.0.0.1');
  const wait = text('wait');
  let waitMs = DEFAULT_WAIT_MS;
  if (wait !== undefined) {
    const ms = wait === '0' ? 0 : parseDuration(wait);
    if (ms === undefined)
      throw new UsageError(`--wait must be a duration such as 30s or 2m, or 0 (got ${JSON.stringify(wait)})`);
    waitMs = ms;
  }
  return {
    concurrency: intFlag('concurrency', text('concurrency'), 1, MAX_CONCURRENCY),
    port: intFlag('port', text('port'), 0, 65535),
    host,
    waitMs,
  };
}
