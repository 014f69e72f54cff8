import type { Transaction } from 'kysely';
import type pg from 'pg';
import { type Config, loadConfig } from '../config/load-config.js';
import { IdempotencyTransactionUnsupportedError, ServiceUnreachableError, WorkerHandlerError } from '../errors.js';
import {
  type IdempotencyKey,
  type IdempotencyMetrics,
  IdempotencyService,
  type ProcessResult,
} from '../idempotency/index.js';
import { type Logger, silentLogger } from '../logger.js';
import { createRedisClient, type RedisClient } from '../redis.js';
import type { WorkerJob } from './job.js';
import { newWorkerId, queueLists, workerKeys } from './keys.js';
import { ListSource } from './list-source.js';
import type { WorkerMetrics } from './metrics.js';
import { Reaper } from './reaper.js';
import { workerScripts } from './scripts.js';
import type { JobSource } from './source.js';
import { StreamSource } from './stream-source.js';
import { Worker } from './worker.js';

/** What every handler gets besides the job. */
export interface JobContext {
  /** The job's idempotency key (by default the event id, under the worker's `name` and the job's tenant). */
  readonly key: IdempotencyKey;
  /** 1 on the first run, `retries + 1` after failures. */
  readonly attempt: number;
  readonly workerId: string;
  readonly logger: Logger;
}

/** A handler run with `processWithIdempotency`: at most once per key; `signal` fires if the key's lease is lost. */
export type JobProcessor = (job: WorkerJob, context: JobContext & { readonly signal: AbortSignal }) => unknown;

/**
 * A handler run with `processInTransaction`: its writes through `trx` commit together with the job's idempotency key,
 * so its effect happens exactly once. Needs `idempotency.storage.type: database` (the default).
 */
// biome-ignore lint/suspicious/noExplicitAny: the application's database schema type
export type JobTransactionProcessor<DB = any> = (
  job: WorkerJob,
  trx: Transaction<DB>,
  context: JobContext & { readonly client: pg.PoolClient },
) => Promise<unknown>;

/** Exactly one of the two. */
export type JobHandler =
  | { process: JobProcessor; processInTransaction?: never }
  | { processInTransaction: JobTransactionProcessor; process?: never };

/** What the worker needs of the idempotency service: `IdempotencyService` and `Manager` both have it. */
export type WorkerIdempotency = Pick<
  IdempotencyService,
  'generateIdempotencyKey' | 'processWithIdempotency' | 'processInTransaction'
>;

export interface WorkerCommonOptions {
  /** @defaultValue `loadConfig()` (EXACTLY_ONCE_CONFIG, DATABASE_URL, REDIS_URL); its `worker:` section holds every default */
  config?: Config;
  /** Commands go here; blocking pops get a duplicate of it. @defaultValue a client of `redis` config, closed by `stop()` */
  redis?: RedisClient;
  /** @defaultValue an `IdempotencyService` of `config` (closed by `stop()`); a `Manager` works too */
  idempotency?: WorkerIdempotency;
  /** @defaultValue silent */
  logger?: Logger;
  /** `Metrics` from `exactly-once/metrics` implements both. */
  metrics?: WorkerMetrics & IdempotencyMetrics;
  /** Jobs run at once in this process. @defaultValue `worker.concurrency` (16) */
  concurrency?: number;
  /** @defaultValue `worker.max_retries` (3) */
  maxRetries?: number;
  /** Idempotency queue name of the default key. @defaultValue the `queue` (or `stream`) option's text */
  name?: string;
  /** The idempotency key of a job. @defaultValue `generateIdempotencyKey(name, job.tenant_id ?? '', job.id)` */
  key?: (job: WorkerJob) => IdempotencyKey;
}

export interface ListWorkerOptions extends WorkerCommonOptions {
  /** A list, or a pattern with `{priority}` (one list per `worker.priorities`, highest first). @defaultValue `worker.queue`, else `outbox.queue_pattern` */
  queue?: string;
  stream?: never;
}

export interface StreamWorkerOptions extends WorkerCommonOptions {
  stream: string;
  /** @defaultValue `worker.stream.group` ("exactly-once") */
  group?: string;
  queue?: never;
}

export type WorkerOptions = (ListWorkerOptions | StreamWorkerOptions) & JobHandler;

/**
 * A worker for the lists (or a stream) the relay fills: reliable pop, priorities, heartbeat, a reaper for dead
 * workers' jobs, retries with backoff, a dead-letter list, graceful `stop()`; every job through the idempotency
 * service, so its effect happens once. Call `start()`; `stop()` drains.
 *
 * @example
 * const worker = createWorker({ queue: 'jobqueue:{priority}_priority', process: async (job) => sendEmail(job.payload) });
 * await worker.start();
 * process.once('SIGTERM', () => worker.stop());
 */
export function createWorker(options: WorkerOptions): Worker {
  if (typeof options.process !== 'function' && typeof options.processInTransaction !== 'function') {
    throw new WorkerHandlerError(
      'createWorker needs a handler: process(job, context) or processInTransaction(job, trx, context)',
    );
  }
  const config = options.config ?? loadConfig();
  // Said at creation rather than by every job on its way to the dead-letter list.
  if (options.processInTransaction && !options.idempotency && config.idempotency.storage.type !== 'database') {
    throw new IdempotencyTransactionUnsupportedError(config.idempotency.storage.type);
  }
  const settings = config.worker;
  const logger = (options.logger ?? silentLogger).child({ component: 'worker' });
  const owned: (() => Promise<unknown>)[] = [];
  const redis = options.redis ?? createRedisClient(config.redis, logger);
  if (!options.redis) owned.push(async () => redis.disconnect());
  const blocking = redis.duplicate() as RedisClient;
  owned.push(async () => blocking.disconnect());
  let service = options.idempotency;
  if (!service) {
    const own = new IdempotencyService({
      config,
      redis,
      logger,
      ...(options.metrics ? { metrics: options.metrics } : {}),
    });
    owned.unshift(() => own.close());
    service = own;
  }
  const id = newWorkerId();
  const keys = workerKeys(settings.keyPrefix);
  const scripts = workerScripts(redis);
  const timing = { blockTimeoutMs: settings.blockTimeout };
  const fallback = {
    queues: queueLists(settings.queue ?? config.outbox.queuePattern, settings.priorities),
    defaultPriority: settings.defaultPriority,
  };
  let source: JobSource;
  let name: string;
  let reaper: Reaper | undefined;
  if (options.stream !== undefined) {
    name = options.name ?? options.stream;
    source = new StreamSource({
      ...{ redis, blocking, scripts, keys, ...timing },
      stream: options.stream,
      group: options.group ?? settings.stream.group,
      consumer: id,
      claimIdleMs: settings.stream.claimIdle,
    });
  } else {
    const pattern = options.queue ?? settings.queue ?? config.outbox.queuePattern;
    name = options.name ?? pattern;
    const queues = queueLists(pattern, settings.priorities);
    source = new ListSource({
      ...{ redis, blocking, scripts, keys, workerId: id, queues, ...timing },
      defaultPriority: settings.defaultPriority,
      completedMax: settings.completedMax,
    });
    reaper = new Reaper({
      ...{ redis, scripts, keys, fallback, logger },
      intervalMs: settings.reaperInterval,
      onReaped: (n) => options.metrics?.workerReaped?.(n),
    });
  }
  const svc = service;
  const keyOf = options.key ?? ((job: WorkerJob) => svc.generateIdempotencyKey(name, job.tenant_id ?? '', job.id));
  const jobLogger = logger.child({ workerId: id });
  const execute = (job: WorkerJob, attempt: number): Promise<ProcessResult<unknown>> => {
    const key = keyOf(job);
    const base = { key, attempt, workerId: id, logger: jobLogger };
    if (options.processInTransaction) {
      const handler = options.processInTransaction;
      return svc.processInTransaction(key, (trx, client) => handler(job, trx, { ...base, client }));
    }
    const handler = options.process as JobProcessor;
    return svc.processWithIdempotency(key, ({ signal }) => handler(job, { ...base, signal }));
  };
  return new Worker({
    ...{ id, name, source, redis, keys, execute, logger: jobLogger, reaper },
    concurrency: options.concurrency ?? settings.concurrency,
    maxRetries: options.maxRetries ?? settings.maxRetries,
    backoff: { baseMs: settings.backoff.base, maxMs: settings.backoff.max },
    heartbeatTtlMs: settings.heartbeatTtl,
    shutdownTimeoutMs: settings.shutdownTimeout,
    metrics: options.metrics ?? {},
    ready: async () => {
      const timeoutMs = config.redis.connectTimeout * 2;
      await Promise.all([ready(redis, timeoutMs), ready(blocking, timeoutMs)]);
    },
    release: async () => {
      for (const close of owned) await close().catch(() => {});
    },
  });
}

/** Wait for a client to be ready: the worker's first commands must not fail on a connection still opening. */
async function ready(redis: RedisClient, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return;
  if (redis.status === 'wait') void redis.connect().catch(() => {});
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new ServiceUnreachableError('redis', "the worker's Redis", `not ready within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}
