import pg from 'pg';
import { formatDuration } from '../config/duration.js';
import type { SqlExecutor } from '../db/executor.js';
import { errorText, postgresTarget, refusesConnection } from '../db/pool.js';
import { ConfigError, ServiceUnreachableError, sqlState } from '../errors.js';
import type { Logger } from '../logger.js';
import { isCluster, type RedisClient, redisTarget } from '../redis.js';
import { checkRedisPersistence } from '../redis-persistence.js';

/** SQLSTATEs that mean "Postgres is on its way up": waiting helps, unlike a wrong password or a missing database. */
const STARTING_UP = new Set(['57P03', '57P01', '53300']);
const ATTEMPT_BACKOFF_MS = [250, 500, 1000, 2000];
const MIN_ATTEMPT_MS = 1000;
/** One Redis connection attempt's bound when the caller does not say (`redis.connect_timeout`'s default). */
const DEFAULT_ATTEMPT_MS = 5000;
/** The client's own connect timeout fires first and names the cause; this only stops a wait that nothing ends. */
const ATTEMPT_SLACK_MS = 1000;

export interface WaitOptions {
  /** Give up at this time (`Date.now()` clock). */
  deadline: number;
  /** The whole wait, for messages. */
  waitMs: number;
  logger: Logger;
  /** Stop waiting (a signal during start-up, or the other service failed): rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * How long one connection attempt may take (`redis.connect_timeout`): with `waitMs` 0 (try once), the bound of that
   * one attempt. @defaultValue 5000
   */
  attemptMs?: number;
}

/**
 * Wait until Postgres accepts a connection and answers `SELECT 1`, one fresh connection per attempt (each bounded by
 * `connectTimeoutMs` and the time left), logging every failed attempt. A wrong password or a missing database fails
 * at once: waiting does not fix those. Throws `ServiceUnreachableError` at the deadline.
 */
export async function waitForPostgres(url: string, connectTimeoutMs: number, options: WaitOptions): Promise<void> {
  const target = postgresTarget(url);
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    // The last attempt may run up to a second past the deadline: cut shorter, it would report a timeout of its own
    // making ("no answer within 18ms") instead of what is wrong.
    const left = options.waitMs === 0 ? connectTimeoutMs : options.deadline - Date.now();
    const timeout = Math.min(connectTimeoutMs, Math.max(MIN_ATTEMPT_MS, left));
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeout, query_timeout: timeout });
    client.on('error', () => {});
    const abandon = () => void client.end().catch(() => {});
    options.signal?.addEventListener('abort', abandon, { once: true });
    const started = performance.now();
    let reason: string;
    try {
      await client.connect();
      await client.query('SELECT 1');
      if (attempt > 1) options.logger.info({ service: 'postgres', target, attempts: attempt }, 'Postgres is reachable');
      return;
    } catch (err) {
      options.signal?.throwIfAborted();
      const state = sqlState(err);
      if (state !== undefined && refusesConnection(state)) {
        throw new ServiceUnreachableError('postgres', target, errorText(err), { cause: err });
      }
      if (state !== undefined && !STARTING_UP.has(state)) throw err;
      reason =
        performance.now() - started >= timeout - 50 ? `no answer within ${formatDuration(timeout)}` : errorText(err);
      const delay = ATTEMPT_BACKOFF_MS[Math.min(attempt - 1, ATTEMPT_BACKOFF_MS.length - 1)] as number;
      if (Date.now() + delay >= options.deadline) {
        throw new ServiceUnreachableError('postgres', target, giveUp(options.waitMs, attempt, reason), { cause: err });
      }
      options.logger.warn(
        { service: 'postgres', target, attempt, error: reason, retryInMs: delay },
        'waiting for Postgres to accept connections',
      );
      await abortableSleep(delay, options.signal);
    } finally {
      options.signal?.removeEventListener('abort', abandon);
      client.end().catch(() => {});
    }
  }
}

/**
 * Wait until the ioredis client is `ready` (connected and past its ready check), logging each failed connection
 * attempt. The relay must not claim before this: a claim published through a client that is not ready fails the
 * whole batch ("Stream isn't writeable"). A cluster client is ready once it has the slot map of a cluster whose state
 * is ok. Throws `ServiceUnreachableError` at the deadline. `target` names the server(s) in messages, without credentials.
 */
export async function waitForRedis(redis: RedisClient, target: string, options: WaitOptions): Promise<void> {
  if (redis.status === 'ready') return;
  // `--wait 0` tries once: the first attempt's outcome decides, however long it takes up to the connect timeout (a
  // deadline of "now" would fire before any attempt could finish).
  const once = options.waitMs === 0;
  await new Promise<void>((resolve, reject) => {
    let attempts = 0;
    let last = 'no answer';
    const giveUpNow = () => {
      done();
      reject(new ServiceUnreachableError('redis', target, giveUp(options.waitMs, attempts, last)));
    };
    const onError = (err: unknown) => {
      attempts++;
      last = errorText(err);
      if (once) return giveUpNow();
      options.logger.warn({ service: 'redis', target, attempt: attempts, error: last }, 'waiting for Redis');
    };
    const onReady = () => {
      done();
      if (attempts > 0) options.logger.info({ service: 'redis', target, attempts: attempts + 1 }, 'Redis is reachable');
      resolve();
    };
    const timer = setTimeout(
      giveUpNow,
      once ? (options.attemptMs ?? DEFAULT_ATTEMPT_MS) + ATTEMPT_SLACK_MS : Math.max(0, options.deadline - Date.now()),
    );
    const onAbort = () => {
      done();
      reject(options.signal?.reason);
    };
    const done = () => {
      clearTimeout(timer);
      redis.off('error', onError);
      redis.off('ready', onReady);
      options.signal?.removeEventListener('abort', onAbort);
    };
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    redis.on('error', onError);
    redis.once('ready', onReady);
  });
}

function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function giveUp(waitMs: number, attempts: number, last: string): string {
  if (waitMs === 0) return `not reachable (--wait 0 tries once; ${last})`;
  return `not reachable within ${formatDuration(waitMs)} (--wait; ${attempts} attempt${attempts === 1 ? '' : 's'}, last: ${last})`;
}

/** Connections one relay process opens, by role, for the budget check and its message. */
export interface ConnectionNeeds {
  relayPool: number;
  adminPool: number;
  listen: number;
  scheduler: number;
}

/**
 * Refuse a `concurrency` whose connections cannot fit what the server, the database or the role allows (each
 * loop holds a connection for its whole batch, and the process needs a few more); warn when they fit the limit but
 * not what is free right now. Superusers are exempt from the database and role limits, as Postgres exempts them.
 */
export async function checkConnectionBudget(
  pool: SqlExecutor,
  needs: ConnectionNeeds,
  concurrency: number,
  logger: Logger,
): Promise<void> {
  const needed = needs.relayPool + needs.adminPool + needs.listen + needs.scheduler;
  const { rows } = await pool.query<{
    max_conn: number;
    reserved: number;
    used: number;
    superuser: boolean;
    role: string;
    role_limit: number;
    role_used: number;
    db: string;
    db_limit: number;
    db_used: number;
  }>(
    `SELECT current_setting('max_connections')::int AS max_conn,
            current_setting('superuser_reserved_connections')::int AS reserved,
            (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
            r.rolsuper AS superuser, r.rolname AS role, r.rolconnlimit AS role_limit,
            (SELECT count(*)::int FROM pg_stat_activity WHERE usename = current_user) AS role_used,
            d.datname AS db, d.datconnlimit AS db_limit,
            (SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database()) AS db_used
       FROM pg_roles r, pg_database d
      WHERE r.rolname = current_user AND d.datname = current_database()`,
  );
  const s = rows[0];
  if (!s) return;
  // The connection asking is one of "used" and goes back to the pool; do not count it against us.
  const limits = [
    {
      what: `the server's max_connections (${s.max_conn}, ${s.superuser ? 0 : s.reserved} reserved for superusers)`,
      limit: s.max_conn - (s.superuser ? 0 : s.reserved),
      used: s.used - 1,
    },
    ...(s.superuser || s.role_limit < 0
      ? []
      : [
          { what: `role "${s.role}"'s CONNECTION LIMIT (${s.role_limit})`, limit: s.role_limit, used: s.role_used - 1 },
        ]),
    ...(s.superuser || s.db_limit < 0
      ? []
      : [{ what: `database "${s.db}"'s CONNECTION LIMIT (${s.db_limit})`, limit: s.db_limit, used: s.db_used - 1 }]),
  ];
  const breakdown =
    `${needs.relayPool} for ${concurrency} claim loop${concurrency === 1 ? '' : 's'} and probes, ${needs.adminPool} admin, ` +
    `${needs.listen} LISTEN${needs.scheduler ? `, ${needs.scheduler} scheduler` : ''}`;
  for (const l of limits) {
    if (needed > l.limit) {
      throw new ConfigError(
        'exactly_once.outbox.concurrency',
        `${concurrency} needs ${needed} Postgres connections (${breakdown}), more than ${l.what} allows; lower --concurrency`,
      );
    }
  }
  for (const l of limits) {
    if (needed > l.limit - l.used) {
      logger.warn(
        { needed, limit: l.limit, inUse: l.used, concurrency },
        `this relay needs ${needed} Postgres connections but only ${l.limit - l.used} of ${l.what} are free now; ` +
          'it may fail to connect until others close',
      );
    }
  }
}

/**
 * Check once at start how Redis persists, and say it loudly when a restart would lose what `warning` names
 * (`redisDurabilityWarning(config)`: jobs Postgres already marks published, the Redis outbox, idempotency keys; G1
 * ends where Redis forgets). Never fails the start: the relay still works.
 */
export async function reportRedisPersistence(
  redis: RedisClient,
  url: string,
  logger: Logger,
  warning: string,
  gauge?: (redis: string, durable: boolean) => void,
): Promise<void> {
  if (!isCluster(redis)) return reportOne(redis, redisTarget(url), logger, warning, gauge);
  // Each master holds its own slots' jobs: one that does not persist loses those, so each is checked and reported.
  for (const node of redis.nodes('master')) {
    await reportOne(node, `${node.options.host}:${node.options.port}`, logger, warning, gauge);
  }
}

async function reportOne(
  redis: Pick<RedisClient, 'info' | 'config'>,
  target: string,
  logger: Logger,
  warning: string,
  gauge?: (redis: string, durable: boolean) => void,
): Promise<void> {
  try {
    const p = await checkRedisPersistence(redis);
    gauge?.(target, p.durable);
    const detail = {
      redis: target,
      appendonly: p.aof,
      appendfsync: p.appendfsync ?? 'unknown (CONFIG unavailable)',
      save: p.save,
    };
    if (p.durable) {
      logger.info(detail, 'destination Redis persists jobs (AOF)');
      return;
    }
    logger.warn(detail, warning);
  } catch (err) {
    logger.warn({ err, redis: target }, 'could not check the destination Redis persistence (INFO failed)');
  }
}
