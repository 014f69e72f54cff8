import { postgresUses } from '../config/postgres-use.js';
import { redisUses } from '../config/redis-use.js';
import type { RelayHealth } from '../outbox/circuit-breaker.js';
import { withTimeout } from '../timeout.js';
import type { AdminBackend } from './backend.js';

export type { RelayHealth };

export interface DependencyCheck {
  ok: boolean;
  latency_ms: number;
  error?: string;
  /**
   * `false`: not probed, because nothing of this config is kept there (Postgres with the outbox in Redis; Redis with
   * events going to pg-boss and no idempotency keys or cache in Redis).
   */
  used?: false;
}

/** Anything that reports a relay's health; a `Relay` does. */
export interface HealthSource {
  health(): RelayHealth;
}

export interface RelayCheck {
  ok: boolean;
  breaker: RelayHealth['breaker'];
  consecutive_failures: number;
  last_success_at?: string;
  last_error?: string;
  error?: string;
}

export interface Readiness {
  ready: boolean;
  checks: { postgres: DependencyCheck; redis: DependencyCheck; relay?: RelayCheck };
}

/** A probe waits this long for each dependency; a hung connection must not hang the probe. */
export const READINESS_TIMEOUT_MS = 2000;
/** Written by the Redis probe (with a short TTL): a Redis that answers PING can still refuse writes (OOM, replica). */
export const READINESS_KEY = 'exactly-once:readyz';

/**
 * Can this process do its work: does Postgres answer `SELECT 1`, does Redis accept a write (a tiny `SET` with a 10 s
 * TTL on a key of ours: PING succeeds on a Redis that refuses every write at `maxmemory` with `noeviction`), each
 * within 2 s, and, when a relay is given, is it able to publish (its circuit breaker not open). Every check runs at
 * once. The error text is the driver's message class only (no connection string). Postgres or Redis is not probed when
 * the config keeps nothing there (`postgresUses`, `redisUses`): the check says `used: false` and counts as ok.
 *
 * @example const { ready, checks } = await checkReadiness(manager, relay);
 */
export async function checkReadiness(
  backend: Pick<AdminBackend, 'pool' | 'redis'> & { config?: AdminBackend['config'] },
  relay?: HealthSource,
): Promise<Readiness> {
  const usesPostgres = !backend.config || postgresUses(backend.config).length > 0;
  const usesRedis = !backend.config || redisUses(backend.config).length > 0;
  const [postgres, redis] = await Promise.all([
    usesPostgres
      ? probe(async () => {
          await backend.pool.query('SELECT 1');
        })
      : ({ ok: true, latency_ms: 0, used: false } as const),
    usesRedis
      ? probe(async () => {
          await backend.redis.set(READINESS_KEY, String(Date.now()), 'PX', 10_000);
        })
      : ({ ok: true, latency_ms: 0, used: false } as const),
  ]);
  const checks: Readiness['checks'] = { postgres, redis };
  if (relay) checks.relay = relayCheck(relay.health());
  return { ready: postgres.ok && redis.ok && (checks.relay?.ok ?? true), checks };
}

function relayCheck(h: RelayHealth): RelayCheck {
  const ok = h.ready && h.breaker !== 'open';
  return {
    ok,
    breaker: h.breaker,
    consecutive_failures: h.consecutiveFailures,
    ...(h.lastSuccessAt ? { last_success_at: h.lastSuccessAt.toISOString() } : {}),
    ...(h.lastError ? { last_error: clean(h.lastError) } : {}),
    ...(ok ? {} : { error: clean(h.reason ?? `circuit breaker ${h.breaker}`) }),
  };
}

async function probe(check: () => Promise<void>): Promise<DependencyCheck> {
  const started = performance.now();
  try {
    await withTimeout(check(), READINESS_TIMEOUT_MS, () => new Error(`no answer within ${READINESS_TIMEOUT_MS} ms`));
    return { ok: true, latency_ms: elapsed(started) };
  } catch (err) {
    return { ok: false, latency_ms: elapsed(started), error: describe(err) };
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}

function describe(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const text = clean(message);
  return typeof code === 'string' && !text.startsWith(code) ? `${code}: ${text}` : text;
}

/** Driver messages can carry host names and URLs; keep them short and without credentials. */
function clean(message: string): string {
  return message.replace(/\w+:\/\/[^\s]+/g, '<url>').slice(0, 200);
}
