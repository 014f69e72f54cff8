import pg from 'pg';
import { formatDuration } from '../config/duration.js';
import { ServiceUnreachableError, sqlState } from '../errors.js';
import type { Logger } from '../logger.js';

// Postgres returns int8 (our seq column) as a string by default; keep it a string so ids never lose precision.

/** `database.connect_timeout`'s default, for pools created without config. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;

export interface PoolOptions extends Omit<pg.PoolConfig, 'connectionString' | 'Client'> {
  /**
   * How long a new connection may take, TCP connect and Postgres startup together: a server that accepts the
   * connection and never answers fails after this instead of hanging. Waiting for a free connection of a busy pool is
   * not bounded by it (that is back-pressure, not an outage). `database.connect_timeout` in config.
   * @defaultValue 5000
   */
  connectTimeoutMs?: number;
  /** `statement_timeout` of every session (`database.statement_timeout`). @defaultValue none */
  statementTimeoutMs?: number;
}

/**
 * A pg pool that logs and survives the errors an idle client raises when Postgres restarts (without a listener those
 * crash the process), with a connect timeout on every connection. A connection that cannot be made rejects with
 * `ServiceUnreachableError` naming `host:port/database` (never the password); errors Postgres itself sends (a wrong
 * password, a missing database) keep their SQLSTATE.
 *
 * @example const pool = createPool(config.database.url, logger, { max: 4, ...poolTimeouts(config.database) });
 */
export function createPool(url: string, logger: Logger, options: PoolOptions = {}): pg.Pool {
  const { connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS, statementTimeoutMs, ...rest } = options;
  const pool = new pg.Pool({
    connectionString: url,
    // A peer that vanished without a FIN (a VM gone, a cable pulled) is noticed by TCP instead of never.
    keepAlive: true,
    ...(statementTimeoutMs ? { statement_timeout: statementTimeoutMs } : {}),
    ...rest,
    Client: timedClient(postgresTarget(url), connectTimeoutMs),
  });
  pool.on('error', (err) => logger.warn({ err }, 'idle Postgres connection failed; it will be replaced'));
  return pool;
}

/** The timeouts of `config.database` as `createPool` options. */
export function poolTimeouts(database: { connectTimeout: number; statementTimeout: number }): PoolOptions {
  return { connectTimeoutMs: database.connectTimeout, statementTimeoutMs: database.statementTimeout };
}

/** `host:port/database` of a Postgres URL, without user or password, for messages. */
export function postgresTarget(url: string): string {
  if (url.startsWith('/')) return url;
  try {
    const u = new URL(url);
    const host = u.hostname || u.searchParams.get('host') || 'localhost';
    return `${host}:${u.port || '5432'}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return '(invalid DATABASE_URL)';
  }
}

/**
 * Wrap a failed connect in `ServiceUnreachableError`. Errors that carry a SQLSTATE came from Postgres itself and
 * stay as they are, so callers can still match them.
 */
export function connectError(target: string, err: unknown, timedOutAfterMs?: number): unknown {
  const state = sqlState(err);
  if ((state !== undefined && !refusesConnection(state)) || err instanceof ServiceUnreachableError) return err;
  const reason =
    timedOutAfterMs !== undefined
      ? `no answer within ${formatDuration(timedOutAfterMs)} (database.connect_timeout)`
      : errorText(err);
  return new ServiceUnreachableError('postgres', target, reason, { cause: err });
}

/**
 * SQLSTATEs with which a server refuses a connection for good: a database that does not exist (3D000), a role,
 * password or pg_hba rule that does not let us in (class 28). No waiting fixes them, and they are the caller's to
 * name as unreachable, with its code. Other states (57P03 "starting up", 53300 "too many connections") stay
 * driver errors, which callers match on to wait.
 */
export function refusesConnection(state: string): boolean {
  return state === '3D000' || state.startsWith('28');
}

/** A driver error as one line: its message, else its code (Node's AggregateError for a refused dual-stack connect has neither on top). */
export function errorText(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0 && !err.message) return errorText(err.errors[0]);
  const e = err as { message?: unknown; code?: unknown } | null;
  if (typeof e?.message === 'string' && e.message) return e.message;
  if (typeof e?.code === 'string') return e.code;
  return String(err);
}

type ConnectCallback = ((err: Error) => void) | ((err: null, client: pg.Client) => void);

/** pg.Client with the connect timeout applied and connect failures named; the pool builds its clients from it. */
function timedClient(target: string, connectTimeoutMs: number): NonNullable<pg.PoolConfig['Client']> {
  return class TimedClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super({
        ...(typeof config === 'string' ? { connectionString: config } : config),
        connectionTimeoutMillis: connectTimeoutMs,
      });
    }

    override connect(): Promise<pg.Client>;
    override connect(callback: ConnectCallback): void;
    override connect(callback?: ConnectCallback): Promise<pg.Client> | undefined {
      const started = performance.now();
      const wrap = (err: unknown) =>
        connectError(
          target,
          err,
          performance.now() - started >= connectTimeoutMs - 50 && connectTimeoutMs > 0 ? connectTimeoutMs : undefined,
        ) as Error;
      if (callback) {
        const done = callback as (err: Error | null, client?: pg.Client) => void;
        super.connect((err: Error | null) => (err ? done(wrap(err)) : done(null, this)));
        return;
      }
      return super.connect().catch((err: unknown) => {
        throw wrap(err);
      });
    }
  };
}
