import type pg from 'pg';
import type { Db, JobInsert, PgBoss } from 'pg-boss';
import { ConfigError, PublishUnavailableError } from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import type { ClaimedEvent, Publisher, PublishOptions, PublishOutcome } from '../outbox/types.js';
import { jobJson, priorityOf } from './job.js';
import {
  isEventError,
  messageOf,
  type PgBossQueueOptions,
  PgBossQueues,
  type QueueState,
  unavailable,
} from './pg-boss-queues.js';

export type { PgBossQueueOptions };

export interface PgBossPublisherOptions {
  /** The outbox's database: the jobs are written in the relay's claim transaction, so pg-boss must live there too. */
  databaseUrl: string;
  /** @defaultValue "pgboss" */
  schema?: string;
  /** Queue of events without their own `queue`; `{priority}` becomes `high` or `low`. @defaultValue "jobqueue.{priority}_priority" */
  queuePattern?: string;
  /** @defaultValue "low" */
  defaultPriority?: 'high' | 'low';
  /** Create a missing queue (with `queueOptions`) instead of failing its events. @defaultValue false */
  createQueues?: boolean;
  queueOptions?: PgBossQueueOptions;
  /** @defaultValue 5000 */
  connectTimeoutMs?: number;
  logger?: Logger;
}

const SAVEPOINT = 'eo_pg_boss';

interface Planned {
  index: number;
  queue: string;
  aggregate: string;
  job: JobInsert;
}

/** An event's job was not written for a reason of its own; the batch is redone one event at a time to find it. */
class EventRefused extends Error {}

/**
 * `outbox.publisher: pg-boss`: one pg-boss job per event, inserted with pg-boss's own `insert` on the relay's claim
 * transaction (its `db` option), so the job and the outbox lanes' cursors commit together or not at all. Exactly once
 * without high-water marks (G2) or a deadline: a relay killed before COMMIT leaves neither the jobs nor the cursors'
 * move, and the next claim starts over. The job id is the event id (pg-boss's primary key is queue + id),
 * so even a replayed event cannot become a second job in its queue. From there pg-boss's retry and dead-letter apply.
 *
 * Order (G3): an aggregate's jobs are created in outbox order; jobs of one batch share pg-boss's `created_on` (the
 * transaction's time). A `key_strict_fifo` queue breaks that tie by job id, so a later event of an aggregate whose id
 * sorts lower than an earlier one's in the same batch is held for the next batch. UUIDv7 ids are random within their
 * millisecond, so a burst one aggregate wrote in one millisecond drains a few events per batch on such a queue.
 *
 * Failures are attributed as the Redis publishers do: a missing queue, a name pg-boss refuses, a queue policy that
 * would drop jobs, or an insert Postgres refuses (SQLSTATE class 22, 23, 42) is that event's `failed` outcome, and later
 * events of its aggregate are `held`. The inserts run under a SAVEPOINT, so a refused one rolls back to it instead of
 * aborting the claim; the batch is then written one event at a time. Anything else (connection lost, timeout, a
 * deadlock) throws `PublishUnavailableError`: the relay rolls the whole claim back, counts no retry, and its circuit
 * breaker counts the failure.
 *
 * pg-boss is an optional peer dependency, imported on the first publish: producers never load it. Its schema is
 * installed or migrated then, by `start()` with `migrate: true` (pg-boss serialises that with an advisory lock).
 *
 * @example
 * const publisher = new PgBossPublisher({ databaseUrl, queuePattern: 'orders.{priority}', createQueues: true });
 */
export class PgBossPublisher implements Publisher {
  readonly #databaseUrl: string;
  readonly #schema: string;
  readonly #pattern: string;
  readonly #priority: 'high' | 'low';
  readonly #connectTimeoutMs: number;
  readonly #log: Logger;
  readonly #queues: PgBossQueues;
  #boss: Promise<PgBoss> | undefined;

  constructor(options: PgBossPublisherOptions) {
    assertInstalled();
    this.#databaseUrl = options.databaseUrl;
    this.#schema = options.schema ?? 'pgboss';
    this.#pattern = options.queuePattern ?? 'jobqueue.{priority}_priority';
    this.#priority = options.defaultPriority ?? 'low';
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.#log = (options.logger ?? silentLogger).child({ component: 'pg-boss-publisher' });
    this.#queues = new PgBossQueues({
      schema: this.#schema,
      createQueues: options.createQueues ?? false,
      ...(options.queueOptions ? { queueOptions: options.queueOptions } : {}),
      log: this.#log,
    });
  }

  /** The pg-boss queue an event goes to: its `queue`, else the pattern with its priority. */
  queueFor(event: ClaimedEvent): string {
    return event.queue ?? this.#pattern.replaceAll('{priority}', priorityOf(event, this.#priority));
  }

  async publish(events: readonly ClaimedEvent[], options: PublishOptions = {}): Promise<PublishOutcome[]> {
    const client = options.client;
    if (!client) {
      throw new PublishUnavailableError(
        "the pg-boss publisher writes in the relay's claim transaction, and none was given (PublishOptions.client)",
      );
    }
    const boss = await this.#started();
    const outcomes: PublishOutcome[] = new Array(events.length);
    const queues = await this.#queues.lookUp(boss, new Set(events.map((e) => this.queueFor(e))));
    const planned = this.#plan(events, queues, outcomes);
    if (planned.length > 0) await this.#write(boss, client, planned, outcomes);
    return outcomes;
  }

  /** Stop the pg-boss instance (its own small pool); the relay's connections are not ours to close. */
  async close(): Promise<void> {
    const starting = this.#boss;
    this.#boss = undefined;
    const boss = await starting?.catch(() => undefined);
    await boss?.stop({ graceful: false, close: true });
  }

  /** Per event, in order: its job, or why it fails; an aggregate stops at its first failed or held event. */
  #plan(events: readonly ClaimedEvent[], queues: Map<string, QueueState>, outcomes: PublishOutcome[]): Planned[] {
    const stopped = new Set<string>();
    const lastId = new Map<string, string>();
    const planned: Planned[] = [];
    events.forEach((event, index) => {
      const aggregate = `${event.aggregateType}:${event.aggregateId}`;
      if (stopped.has(aggregate)) {
        outcomes[index] = { kind: 'held' };
        return;
      }
      const queue = this.queueFor(event);
      const state = queues.get(queue) as QueueState;
      if (!state.ok) {
        outcomes[index] = { kind: 'failed', error: state.error, ...(state.permanent ? { permanent: true } : {}) };
        stopped.add(aggregate);
        return;
      }
      let data: object;
      try {
        // pg-boss takes `data` as a value and serialises it itself; the text is the list publisher's job, unchanged.
        data = JSON.parse(jobJson(event, priorityOf(event, this.#priority))) as object;
      } catch (err) {
        outcomes[index] = { kind: 'failed', error: `no pg-boss job can be built: ${messageOf(err)}` };
        stopped.add(aggregate);
        return;
      }
      const job: JobInsert = { id: event.id, data };
      if (state.policy === 'key_strict_fifo') {
        // Required by the policy; one aggregate's jobs then run one at a time, oldest first (created_on, then id).
        job.singletonKey = aggregate;
        const key = `${queue}\n${aggregate}`;
        const previous = lastId.get(key);
        if (previous !== undefined && event.id <= previous) {
          outcomes[index] = { kind: 'held' };
          stopped.add(aggregate);
          return;
        }
        lastId.set(key, event.id);
      }
      planned.push({ index, queue, aggregate, job });
    });
    return planned;
  }

  /**
   * One `insert` per queue under one SAVEPOINT. Constraints are made immediate first: pg-boss declares its queue
   * foreign key DEFERRABLE INITIALLY DEFERRED, and a job for a queue deleted meanwhile would otherwise fail the relay's
   * COMMIT (the whole batch, every time) instead of its own insert.
   */
  async #write(boss: PgBoss, client: pg.PoolClient, planned: Planned[], outcomes: PublishOutcome[]): Promise<void> {
    const db: Db = { executeSql: (text, values) => client.query(text, values as unknown[]) };
    await sql(client, `SAVEPOINT ${SAVEPOINT}; SET CONSTRAINTS ALL IMMEDIATE`);
    try {
      const byQueue = new Map<string, Planned[]>();
      for (const p of planned) byQueue.set(p.queue, [...(byQueue.get(p.queue) ?? []), p]);
      for (const [queue, group] of byQueue) {
        const ids = await boss.insert(
          queue,
          group.map((p) => p.job),
          { db, returnId: true },
        );
        if (!(await this.#settle(boss, db, queue, group, ids, outcomes))) throw new EventRefused('a job was skipped');
      }
      await sql(client, `RELEASE SAVEPOINT ${SAVEPOINT}`);
      return;
    } catch (err) {
      if (!(err instanceof EventRefused) && !isEventError(err)) throw unavailable(err);
      this.#log.debug({ err }, 'a pg-boss insert was refused; writing the batch one event at a time');
      await sql(client, `ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
    }
    await this.#writeEach(boss, client, db, planned, outcomes);
    await sql(client, `RELEASE SAVEPOINT ${SAVEPOINT}`);
  }

  /** The slow path after a refused insert: each event under its own SAVEPOINT, so only the culprits fail. */
  async #writeEach(
    boss: PgBoss,
    client: pg.PoolClient,
    db: Db,
    planned: Planned[],
    outcomes: PublishOutcome[],
  ): Promise<void> {
    const stopped = new Set<string>();
    for (const p of planned) {
      if (stopped.has(p.aggregate)) {
        outcomes[p.index] = { kind: 'held' };
        continue;
      }
      await sql(client, `SAVEPOINT ${SAVEPOINT}_event`);
      try {
        const ids = await boss.insert(p.queue, [p.job], { db, returnId: true });
        if (!(await this.#settle(boss, db, p.queue, [p], ids, outcomes))) {
          throw new EventRefused(`pg-boss skipped the job in queue "${p.queue}" and holds no job with its id`);
        }
        await sql(client, `RELEASE SAVEPOINT ${SAVEPOINT}_event`);
      } catch (err) {
        if (!(err instanceof EventRefused) && !isEventError(err)) throw unavailable(err);
        await sql(client, `ROLLBACK TO SAVEPOINT ${SAVEPOINT}_event`);
        this.#queues.forget(p.queue);
        const error =
          err instanceof EventRefused
            ? err.message
            : `pg-boss refused the job for queue "${p.queue}": ${messageOf(err)}`;
        outcomes[p.index] = { kind: 'failed', error };
        stopped.add(p.aggregate);
      }
    }
  }

  /**
   * Outcomes of one insert. pg-boss skips a job whose id its queue already holds (ON CONFLICT DO NOTHING): that is an
   * earlier attempt's job (a replayed event), so `duplicate`. A skipped job that the queue does not hold means its
   * policy dropped it: false, and nothing is recorded for it.
   */
  async #settle(
    boss: PgBoss,
    db: Db,
    queue: string,
    group: Planned[],
    ids: string[] | null,
    outcomes: PublishOutcome[],
  ): Promise<boolean> {
    const inserted = new Set(ids ?? []);
    for (const p of group) {
      if (inserted.has(p.job.id as string)) {
        outcomes[p.index] = { kind: 'published' };
        continue;
      }
      const found = await boss.findJobs(queue, { id: p.job.id as string, db, limit: 1 });
      if (found.length === 0) return false;
      outcomes[p.index] = { kind: 'duplicate' };
    }
    return true;
  }

  #started(): Promise<PgBoss> {
    this.#boss ??= this.#start().catch((err: unknown) => {
      this.#boss = undefined;
      throw err;
    });
    return this.#boss;
  }

  /** Load pg-boss and start it once: installs or migrates its schema; no supervisor, no scheduler (its workers run those). */
  async #start(): Promise<PgBoss> {
    let mod: typeof import('pg-boss');
    try {
      mod = await import('pg-boss');
    } catch (err) {
      throw notInstalled(err);
    }
    const boss = new mod.PgBoss({
      connectionString: this.#databaseUrl,
      schema: this.#schema,
      max: 2,
      connectionTimeoutMillis: this.#connectTimeoutMs,
      application_name: 'exactly-once relay (pg-boss)',
      migrate: true,
      supervise: false,
      schedule: false,
    });
    boss.on('error', (err) => this.#log.warn({ err }, 'pg-boss reported an error'));
    try {
      await boss.start();
    } catch (err) {
      await boss.stop({ graceful: false, close: true }).catch(() => {});
      throw new PublishUnavailableError(`pg-boss could not start in schema "${this.#schema}": ${messageOf(err)}`, {
        cause: err,
      });
    }
    this.#log.info({ schema: this.#schema }, 'pg-boss started (schema installed or migrated)');
    return boss;
  }
}

/**
 * Refuse `publisher: pg-boss` at start when the package cannot be found, rather than failing every batch later.
 * Resolving is not loading: the import itself waits for the first publish.
 */
function assertInstalled(): void {
  try {
    import.meta.resolve('pg-boss');
  } catch (err) {
    throw notInstalled(err);
  }
}

function notInstalled(err: unknown): ConfigError {
  return new ConfigError(
    'exactly_once.outbox.publisher',
    '"pg-boss" needs the pg-boss package, an optional peer dependency that is not installed: npm install pg-boss@^12',
    undefined,
    { cause: err },
  );
}

async function sql(client: pg.PoolClient, text: string): Promise<void> {
  try {
    await client.query(text);
  } catch (err) {
    throw unavailable(err);
  }
}
