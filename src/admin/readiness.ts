import type { AdminBackend } from './backend.js';

export interface DependencyCheck {
  ok: boolean;
  latency_ms: number;
  error?: string;
}

export interface Readiness {
  ready: boolean;
  checks: { postgres: DependencyCheck; redis: DependencyCheck };
}

/** A probe waits this long for each dependency; a hung connection must not hang the probe. */
export const READINESS_TIMEOUT_MS = 2000;

/**
 * Can this process do its work: does Postgres answer `SELECT 1` and Redis `PING`, each within 2 s. Both are asked
 * at once. The error text is the driver's message class only (no connection string).
 *
 * @example const { ready, checks } = await checkReadiness(manager);
 */
export async function checkReadiness(backend: Pick<AdminBackend, 'pool' | 'redis'>): Promise<Readiness> {
  const [postgres, redis] = await Promise.all([
    probe(async () => {
      await backend.pool.query('SELECT 1');
    }),
    probe(async () => {
      const pong = await backend.redis.ping();
      if (pong !== 'PONG') throw new Error(`unexpected PING reply ${JSON.stringify(pong)}`);
    }),
  ]);
  return { ready: postgres.ok && redis.ok, checks: { postgres, redis } };
}

async function probe(check: () => Promise<void>): Promise<DependencyCheck> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${READINESS_TIMEOUT_MS} ms`)),
          READINESS_TIMEOUT_MS,
        );
      }),
    ]);
    return { ok: true, latency_ms: elapsed(started) };
  } catch (err) {
    return { ok: false, latency_ms: elapsed(started), error: describe(err) };
  } finally {
    clearTimeout(timer);
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}

function describe(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  // Driver messages can carry host names; keep them short and without credentials.
  const text = message.replace(/\w+:\/\/[^\s]+/g, '<url>').slice(0, 200);
  return typeof code === 'string' ? `${code}: ${text}` : text;
}
