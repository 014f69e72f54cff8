import type { PgBoss } from 'pg-boss';
import { PG_BOSS_QUEUE_NAME } from '../config/schema.js';
import { ConfigError, PublishUnavailableError, sqlState } from '../errors.js';
import type { Logger } from '../logger.js';

/** Options of the queues the relay creates (`outbox.pg_boss.queue_options`), in pg-boss's units after conversion. */
export interface PgBossQueueOptions {
  /** @defaultValue "standard" */
  policy?: 'standard' | 'key_strict_fifo';
  /** @defaultValue 2 */
  retryLimit?: number;
  /** Rounded up to whole seconds. @defaultValue 0 */
  retryDelayMs?: number;
  /** @defaultValue false */
  retryBackoff?: boolean;
  /** Rounded up to whole seconds. @defaultValue 900000 (15 minutes) */
  expireInMs?: number;
  /** @defaultValue none */
  deadLetter?: string;
}

/**
 * Policies whose insert keeps every job. `short`, `stately` and `exclusive` keep one queued job per singleton key and
 * skip the rest (ON CONFLICT DO NOTHING): events would vanish while their rows read published.
 */
const KEEPING_POLICIES = new Set(['standard', 'singleton', 'key_strict_fifo']);
/** How long a queue found to exist is trusted before it is looked up again (a deleted queue is also noticed on insert). */
const QUEUE_CACHE_MS = 30_000;
/** pg-boss's error code for a queue that does not exist (manager.js `QUEUE_NOT_FOUND`). */
const QUEUE_NOT_FOUND = 'PGBOSS_QUEUE_NOT_FOUND';
export type QueueState = { ok: true; policy: string; at: number } | { ok: false; error: string; permanent: boolean };

/**
 * The pg-boss queues the relay writes to, as the pg-boss API reports them (`getQueue`, on pg-boss's own pool, outside
 * the claim transaction): whether each exists, with a policy that keeps every job; created when `createQueues` says so.
 * A queue found is trusted for QUEUE_CACHE_MS, a missing one is looked up again on every batch that needs it.
 */
export class PgBossQueues {
  readonly #schema: string;
  readonly #createQueues: boolean;
  readonly #options: Required<Omit<PgBossQueueOptions, 'deadLetter'>> & { deadLetter?: string };
  readonly #log: Logger;
  readonly #queues = new Map<string, QueueState & { ok: true }>();

  constructor(options: { schema: string; createQueues: boolean; queueOptions?: PgBossQueueOptions; log: Logger }) {
    this.#schema = options.schema;
    this.#createQueues = options.createQueues;
    const q = options.queueOptions ?? {};
    this.#options = {
      policy: q.policy ?? 'standard',
      retryLimit: q.retryLimit ?? 2,
      retryDelayMs: q.retryDelayMs ?? 0,
      retryBackoff: q.retryBackoff ?? false,
      expireInMs: q.expireInMs ?? 900_000,
      ...(q.deadLetter ? { deadLetter: q.deadLetter } : {}),
    };
    this.#log = options.log;
  }

  /** Look the queue up again next time: an insert into it was refused, so it may have been deleted or changed. */
  forget(name: string): void {
    this.#queues.delete(name);
  }

  /** Each queue's state: cached while it is known to exist; looked up (and created, if configured) otherwise. */
  async lookUp(boss: PgBoss, names: Set<string>): Promise<Map<string, QueueState>> {
    const now = performance.now();
    const states = new Map<string, QueueState>();
    await Promise.all(
      [...names].map(async (name) => {
        const cached = this.#queues.get(name);
        states.set(name, cached && now - cached.at < QUEUE_CACHE_MS ? cached : await this.#state(boss, name, now));
      }),
    );
    return states;
  }

  async #state(boss: PgBoss, name: string, now: number): Promise<QueueState> {
    if (!PG_BOSS_QUEUE_NAME.test(name)) {
      return {
        ok: false,
        permanent: true,
        error: `${JSON.stringify(name)} is not a pg-boss queue name (letters, digits, _ - . / only)`,
      };
    }
    let queue = await this.#call(() => boss.getQueue(name));
    if (!queue && this.#createQueues) {
      const problem = await this.#create(boss, name);
      if (problem) return { ok: false, permanent: false, error: problem };
      queue = await this.#call(() => boss.getQueue(name));
    }
    if (!queue) {
      this.#queues.delete(name);
      return {
        ok: false,
        permanent: false,
        error:
          `pg-boss queue "${name}" does not exist (schema ${this.#schema}); create it (boss.createQueue) and retry ` +
          'the event, or set outbox.pg_boss.create_queues: true',
      };
    }
    const policy = queue.policy ?? 'standard';
    if (!KEEPING_POLICIES.has(policy)) {
      return {
        ok: false,
        permanent: false,
        error:
          `pg-boss queue "${name}" has policy "${policy}", which keeps one queued job per key and drops the rest; ` +
          'use a standard, singleton or key_strict_fifo queue',
      };
    }
    const state = { ok: true as const, policy, at: now };
    this.#queues.set(name, state);
    return state;
  }

  /** Create a queue (its dead-letter queue first); the reason it could not be, or `undefined`. */
  async #create(boss: PgBoss, name: string): Promise<string | undefined> {
    const o = this.#options;
    const options = {
      policy: o.policy,
      retryLimit: o.retryLimit,
      retryDelay: Math.ceil(o.retryDelayMs / 1000),
      retryBackoff: o.retryBackoff,
      expireInSeconds: Math.max(1, Math.ceil(o.expireInMs / 1000)),
    };
    try {
      if (o.deadLetter && o.deadLetter !== name && !(await boss.getQueue(o.deadLetter))) {
        await boss.createQueue(o.deadLetter, options);
      }
      await boss.createQueue(
        name,
        o.deadLetter && o.deadLetter !== name ? { ...options, deadLetter: o.deadLetter } : options,
      );
      this.#log.info({ queue: name, ...options }, 'created pg-boss queue');
      return undefined;
    } catch (err) {
      if (!isEventError(err)) throw unavailable(err);
      return `could not create pg-boss queue "${name}": ${messageOf(err)}`;
    }
  }

  /** A pg-boss call on its own pool: any failure of it is an outage. */
  async #call<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw unavailable(err);
    }
  }
}

/**
 * An error that belongs to the job(s) of one insert, not to the connection: pg-boss refusing a name or a queue it
 * does not have, or Postgres refusing the data (class 22), a constraint (23) or an object (42, a dropped queue table).
 * A missing privilege (42501) would refuse every event alike: that is the operator's, an outage.
 */
export function isEventError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === QUEUE_NOT_FOUND || code === 'ERR_ASSERTION') return true;
  // In a caller's transaction pg-boss reports a queue deleted under its cache as a plain Error; the cause says why.
  const state = sqlState(err) ?? sqlState((err as { cause?: unknown } | null)?.cause);
  if (state === undefined || state === '42501') return false;
  return state.startsWith('22') || state.startsWith('23') || state.startsWith('42');
}

export function unavailable(err: unknown): Error {
  if (err instanceof PublishUnavailableError || err instanceof ConfigError) return err;
  return new PublishUnavailableError(`pg-boss failed: ${messageOf(err)}`, { cause: err });
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
