import { randomBytes } from 'node:crypto';
import type { Config } from '../config/load-config.js';
import {
  ExactlyOnceError,
  FeatureDisabledError,
  IdempotencyInProgressError,
  IdempotencyKeyExistsError,
  IdempotencyKeyInvalidError,
  IdempotencyKeyMismatchError,
  IdempotencyLeaseLostError,
  IdempotencyStorageError,
  IdempotencyTransactionUnsupportedError,
} from '../errors.js';
import { type Logger, silentLogger } from '../logger.js';
import { createIdempotencyStore, type StoreCapabilities } from './create-store.js';
import { HookRegistry, type ProcessingHook } from './hooks.js';
import { jsonValueProblem } from './json-value.js';
import { type IdempotencyKey, type KeyRef, keyWithTtl, refOf, validateKey, validateRef } from './keys.js';
import { holdingLease } from './lease.js';
import type { IdempotencyMetrics } from './metrics.js';
import { CallFailure, type RunDeps, runProcessor } from './run-processor.js';
import type {
  CreateRecordInput,
  DedupStats,
  IdempotencyServiceOptions,
  ProcessOptions,
  Processor,
  ProcessResult,
} from './service-types.js';
import { StatsBuffer } from './stats-buffer.js';
import { type AttemptOutcome, attemptInTransaction, type TransactionalProcessor } from './transactional.js';
import type { ClaimRequest, IdempotencyRecord, IdempotencyStore } from './types.js';

type Attempt<T> = (ref: KeyRef, claim: ClaimRequest, deadline: number) => Promise<AttemptOutcome<T>>;

/**
 * Idempotent processing: `processWithIdempotency` runs a processor at most once per key among concurrent callers
 * (G4), recovers crashed claims after `idempotency.lease` (G5), and `processInTransaction` commits the key with the
 * processor's own Postgres writes (exactly-once effect).
 *
 * @example
 * const service = new IdempotencyService({ config: loadConfig(), pool, redis, logger });
 * const key = service.generateIdempotencyKey('emails', '', job.id);
 * const { duplicate, result } = await service.processWithIdempotency(key, () => sendEmail(job));
 */
export class IdempotencyService {
  readonly store: IdempotencyStore;
  private readonly backend: StoreCapabilities;
  private readonly cfg: Config['idempotency'];
  private readonly logger: Logger;
  private readonly metrics: IdempotencyMetrics;
  private readonly hooks: HookRegistry;
  private readonly stats: StatsBuffer;
  private readonly runDeps: RunDeps;
  private closed: Promise<void> | undefined;

  constructor(options: IdempotencyServiceOptions) {
    this.cfg = options.config.idempotency;
    this.logger = (options.logger ?? silentLogger).child({ component: 'idempotency' });
    this.metrics = options.metrics ?? {};
    this.hooks = new HookRegistry(this.logger);
    this.backend = createIdempotencyStore(options.config, {
      pool: options.pool,
      redis: options.redis,
      logger: this.logger,
      onCacheError: (queue, operation) => this.metric('storageError', queue, operation),
    });
    this.store = this.backend.store;
    this.stats = new StatsBuffer(this.store, this.logger);
    this.runDeps = {
      hooks: this.hooks,
      logger: this.logger,
      succeeded: (queueName, seconds) => this.metric('success', queueName, seconds),
    };
  }

  /**
   * A deterministic key with the configured `default_ttl` (see the standalone `generateIdempotencyKey`).
   *
   * @example service.generateIdempotencyKey('orders', 'acme', 'order-123').id // 'orders:acme:order-123'
   */
  generateIdempotencyKey(queueName: string, tenantId: string, ...suffix: string[]): IdempotencyKey {
    return keyWithTtl(this.cfg.defaultTtl, queueName, tenantId, suffix);
  }

  /**
   * Run `processor` unless this key already ran. The first caller claims the key with a lease (renewed while the
   * processor runs); concurrent duplicates wait up to `wait_timeout` for its result, then get
   * `IdempotencyInProgressError`. A processor error releases the key and is rethrown. The result is stored as JSON
   * for the key's `ttl`.
   *
   * The processor gets `{ signal, key }`: `signal` fires when the lease is lost (see `ProcessorContext`). A call that
   * lost its lease ends with `IdempotencyLeaseLostError` (its completion is fenced by the claim token, so it never
   * overwrites the record of whoever took the key over); its effect may still have happened, so side effects that must
   * happen exactly once across a lease loss belong in `processInTransaction`. If the lease lapsed but nobody claimed
   * the key in between, the completion is accepted and the result returned as usual.
   *
   * @example
   * const r = await service.processWithIdempotency(key, async ({ signal }) => chargeCard(order, { signal }), {
   *   fingerprint: sha256(body),
   * });
   * if (r.duplicate) logger.info('already charged');
   */
  async processWithIdempotency<T>(
    key: IdempotencyKey,
    processor: Processor<T>,
    options: ProcessOptions = {},
  ): Promise<ProcessResult<T>> {
    return this.execute(key, options, async (ref, claim) => {
      const claimedAt = Date.now();
      const outcome = await this.op(ref.queueName, 'claim', () => this.store.claim(ref, claim));
      if (outcome.kind !== 'claimed') return outcome;
      const controller = new AbortController();
      const ran = await holdingLease(
        {
          ref,
          leaseMs: claim.leaseMs,
          claimedAt,
          renew: () => this.op(ref.queueName, 'renew', () => this.store.renew(ref, claim.token, claim.leaseMs)),
          release: () => this.op(ref.queueName, 'release', () => this.store.release(ref, claim.token)),
          logger: this.logger,
          controller,
        },
        (signal) => runProcessor(this.runDeps, key, () => processor({ signal, key }), signal),
      );
      if (!(await this.completeWithRetry(ref, claim, ran.json))) {
        // Someone claimed the key after our lease lapsed (or deleted it): their record stands, ours is not stored.
        // The signal fires now if the lease check had not noticed yet (work the processor left running learns too).
        if (!controller.signal.aborted) {
          controller.abort(
            new IdempotencyLeaseLostError(key.id, 'another caller took the key over, or it was deleted'),
          );
        }
        throw new CallFailure(controller.signal.reason, 'lease');
      }
      return { kind: 'ran', ...ran };
    });
  }

  /**
   * The transactional form: `processor` runs inside the Postgres transaction that also records the key as completed
   * with its result, so its writes (and outbox events it stores with `storeInOutbox(trx, ...)`) commit exactly once.
   * A worker killed before COMMIT leaves nothing behind and a redelivery runs again; after COMMIT a redelivery is a
   * duplicate. Needs `storage.type: database`.
   *
   * @example
   * await service.processInTransaction(key, async (trx) => {
   *   await trx.insertInto('payments').values(payment).execute();
   *   return { paymentId: payment.id };
   * });
   */
  // biome-ignore lint/suspicious/noExplicitAny: the caller's database schema type, when it has one
  async processInTransaction<T, DB = any>(
    key: IdempotencyKey,
    processor: TransactionalProcessor<T, DB>,
    options: ProcessOptions = {},
  ): Promise<ProcessResult<T>> {
    const db = this.backend.transactional;
    if (!db) throw new IdempotencyTransactionUnsupportedError(this.cfg.storage.type);
    const cache = this.backend.cache;
    return this.execute(key, options, async (ref, claim, deadline) => {
      const cached = await cache?.lookup(ref);
      if (cached) return { kind: 'completed', record: cached };
      const startedAt = Date.now(); // the row's TTL starts later, inside the transaction
      const outcome = await this.op(ref.queueName, 'transaction', () =>
        attemptInTransaction<T, DB>(
          { db, ref, claim, deadline, transactionTimeoutMs: this.cfg.storage.database.transactionTimeout },
          (trx, client) => runProcessor(this.runDeps, key, () => processor(trx, client)),
        ),
      );
      // The transaction bypassed the store's own complete(), which would have cached the result: do it here.
      if (outcome.kind === 'ran' && cache) {
        await cache.rememberJson(ref, outcome.json, key.ttl - (Date.now() - startedAt), claim.fingerprint);
      }
      if (outcome.kind === 'completed') await cache?.remember(outcome.record);
      return outcome;
    });
  }

  /** Add lifecycle hooks; they run in registration order. Returns a function that removes them. */
  registerHook(hook: ProcessingHook): () => void {
    return this.hooks.register(hook);
  }

  /**
   * Counters shared by every process using the same store. `tenantId` omitted: all tenants of the queue, tenant-less
   * keys included; `''`: only tenant-less keys.
   *
   * @example const { hitRate } = await service.getDedupStats('orders');
   */
  async getDedupStats(queueName: string, tenantId?: string): Promise<DedupStats> {
    await this.stats.flush();
    const [counters, totalKeys] = await Promise.all([
      this.op(queueName, 'stats', () => this.store.readStats(queueName, tenantId)),
      this.op(queueName, 'count', () => this.store.countKeys(queueName, tenantId)),
    ]);
    return {
      queueName,
      tenantId: tenantId ?? null,
      totalKeys,
      hitRate: counters.totalRequests > 0 ? counters.duplicatesAvoided / counters.totalRequests : 0,
      totalRequests: counters.totalRequests,
      duplicatesAvoided: counters.duplicatesAvoided,
      lastUpdated: counters.lastUpdated,
    };
  }

  /** A live record (completed or in progress), or `undefined` when there is none. */
  getRecord(queueName: string, tenantId: string, keyId: string): Promise<IdempotencyRecord | undefined> {
    const ref = { queueName, tenantId, keyId };
    validateRef(ref);
    return this.op(queueName, 'get', () => this.store.get(ref));
  }

  /**
   * Store a completed record by hand (admin API). Throws `IdempotencyKeyExistsError` when a live one exists.
   *
   * @example await service.createRecord({ queueName: 'orders', keyId: 'order-123', value: { status: 'processed' } });
   */
  async createRecord(input: CreateRecordInput): Promise<IdempotencyRecord> {
    const ref = { queueName: input.queueName, tenantId: input.tenantId ?? '', keyId: input.keyId };
    validateRef(ref);
    const ttlMs = input.ttlMs ?? this.cfg.defaultTtl;
    if (!Number.isInteger(ttlMs) || ttlMs <= 0) {
      throw new IdempotencyKeyInvalidError('ttl', 'must be a positive integer number of milliseconds');
    }
    // JSON.stringify would store Infinity or NaN as null: refuse rather than store something else than was given.
    const problem = jsonValueProblem(input.value, 'value', { text: false });
    if (problem) throw new IdempotencyKeyInvalidError('value', problem);
    let json: string | undefined;
    try {
      json = JSON.stringify(input.value);
    } catch (err) {
      throw new IdempotencyKeyInvalidError('value', `is not JSON-serialisable: ${(err as Error).message}`);
    }
    if (json === undefined) throw new IdempotencyKeyInvalidError('value', 'is required (any JSON value)');
    const record = await this.op(ref.queueName, 'create', () => this.store.create(ref, json, ttlMs));
    if (!record) throw new IdempotencyKeyExistsError(ref.keyId);
    return record;
  }

  /** Delete a record; `true` when a live one existed. */
  deleteRecord(queueName: string, tenantId: string, keyId: string): Promise<boolean> {
    const ref = { queueName, tenantId, keyId };
    validateRef(ref);
    return this.op(queueName, 'delete', () => this.store.delete(ref));
  }

  /**
   * Whether the Redis hot cache holds this key's completed record (a duplicate check would be answered from Redis);
   * `null` when the store has no hot cache. A cache that does not answer counts as not holding it.
   *
   * @example await service.isCached('orders', '', 'order-123') // true after the key completed
   */
  async isCached(queueName: string, tenantId: string, keyId: string): Promise<boolean | null> {
    const ref = { queueName, tenantId, keyId };
    validateRef(ref);
    const cache = this.backend.cache;
    if (!cache) return null;
    return (await this.op(queueName, 'cache_get', () => cache.lookup(ref))) !== undefined;
  }

  /**
   * Remove expired records in batches (`storage.database.batch_size` for Postgres, which `idempotency.batch_size`
   * sets when given alone; `batch_size` otherwise), each batch its own short statement. Returns how many were removed. Scheduling is the caller's (once per cluster).
   */
  cleanup(): Promise<number> {
    return this.op('', 'cleanup', () => this.store.cleanup(this.backend.cleanupBatchSize));
  }

  /** Live records across all queues: the `exactly_once_storage_size` gauge. */
  storageSize(): Promise<number> {
    return this.op('', 'count', () => this.store.countKeys());
  }

  /** Flush stats and close the connections the service opened itself. Safe to call twice. */
  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.stats.close();
      await this.backend.dispose();
    })();
    return this.closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The loop both forms share: claim, or wait for the holder, or hand back the stored result. */
  private async execute<T>(
    key: IdempotencyKey,
    options: ProcessOptions,
    attempt: Attempt<T>,
  ): Promise<ProcessResult<T>> {
    if (!this.cfg.enabled) throw new FeatureDisabledError('idempotency');
    validateKey(key);
    const fingerprint = options.fingerprint ?? null;
    if (fingerprint !== null && typeof fingerprint !== 'string') {
      throw new IdempotencyKeyInvalidError('fingerprint', 'must be a string');
    }
    const waitMs = options.waitTimeoutMs ?? this.cfg.waitTimeout;
    const ref = refOf(key);
    const deadline = Date.now() + waitMs;
    let delay = 5;
    for (;;) {
      const claim: ClaimRequest = {
        token: randomBytes(16).toString('hex'),
        leaseMs: this.cfg.lease,
        ttlMs: key.ttl,
        fingerprint,
      };
      let outcome: AttemptOutcome<T>;
      try {
        outcome = await attempt(ref, claim, deadline);
      } catch (err) {
        if (!(err instanceof CallFailure)) throw err;
        if (err.seconds !== undefined) this.metric('failure', key.queueName, err.seconds);
        if (err.cause === 'lease') this.metric('storageError', key.queueName, 'lost_claim');
        this.stats.record(key.queueName, key.tenantId, false);
        // A hook abort means processing never started: there is nothing to report "after".
        if (err.cause !== 'hook') await this.hooks.after(key.id, undefined, err.error);
        throw err.error;
      }
      if (outcome.kind === 'ran') {
        this.metric('check', key.queueName, 'first');
        this.stats.record(key.queueName, key.tenantId, false);
        await this.hooks.after(key.id, outcome.result, undefined);
        return { duplicate: false, result: outcome.result };
      }
      const stored = outcome.record?.fingerprint ?? null;
      if (fingerprint !== null && stored !== null && stored !== fingerprint) {
        this.metric('check', key.queueName, 'mismatch');
        this.stats.record(key.queueName, key.tenantId, false);
        throw new IdempotencyKeyMismatchError(key.id);
      }
      if (outcome.kind === 'completed') {
        this.metric('check', key.queueName, 'duplicate');
        this.metric('duplicateAvoided', key.queueName);
        this.stats.record(key.queueName, key.tenantId, true);
        await this.hooks.duplicate(key.id, outcome.record.result);
        return { duplicate: true, result: outcome.record.result as T };
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        this.metric('check', key.queueName, 'in_progress');
        this.stats.record(key.queueName, key.tenantId, false);
        throw new IdempotencyInProgressError(key.id, waitMs);
      }
      // Backoff keeps 50 waiting duplicates from hammering the store while one long job runs.
      await new Promise((r) => setTimeout(r, Math.min(delay, remaining)));
      delay = Math.min(delay * 2, 250);
    }
  }

  /** Storing the result is retried briefly: the side effect already happened, a lost result means a second run. */
  private async completeWithRetry(ref: KeyRef, claim: ClaimRequest, json: string): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.op(ref.queueName, 'complete', () => this.store.complete(ref, claim.token, json, claim.ttlMs));
      } catch (err) {
        if (attempt >= 3) throw err;
        await new Promise((r) => setTimeout(r, 50 * attempt));
      }
    }
  }

  /** Count the operation; wrap driver errors as IdempotencyStorageError (our own typed errors pass through). */
  private async op<R>(queueName: string, operation: string, fn: () => Promise<R>): Promise<R> {
    this.metric('storageOperation', operation, this.store.kind);
    try {
      return await fn();
    } catch (err) {
      if (err instanceof CallFailure) throw err;
      this.metric('storageError', queueName, operation);
      if (err instanceof ExactlyOnceError) throw err;
      throw new IdempotencyStorageError(operation, { cause: err });
    }
  }

  private metric<K extends keyof IdempotencyMetrics>(
    name: K,
    ...args: Parameters<NonNullable<IdempotencyMetrics[K]>>
  ): void {
    try {
      (this.metrics[name] as ((...a: unknown[]) => void) | undefined)?.call(this.metrics, ...args);
    } catch {
      // metrics never break processing
    }
  }
}
