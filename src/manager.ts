import type pg from 'pg';
import type { Config } from './config/load-config.js';
import { idempotencyRedisUse } from './config/redis-use.js';
import { createPool, poolTimeouts } from './db/pool.js';
import { FeatureDisabledError } from './errors.js';
import {
  type DedupStats,
  type IdempotencyKey,
  type IdempotencyMetrics,
  IdempotencyService,
  type ProcessingHook,
  type ProcessOptions,
  type Processor,
  type ProcessResult,
  type TransactionalProcessor,
} from './idempotency/index.js';
import { type Logger, silentLogger } from './logger.js';
import { createOutboxInspector, type OutboxInspector } from './outbox/inspector.js';
import { Relay } from './outbox/postgres/relay.js';
import type { AfterPushHook } from './outbox/postgres/storage.js';
import { RedisOutboxRelay } from './outbox/redis/relay.js';
import type { OutboxRelay, RelayMetrics } from './outbox/relay-core.js';
import type { PublishSummary } from './outbox/summary.js';
import type { NewOutboxEvent, OutboxEvent, Publisher } from './outbox/types.js';
import { storeInOutbox, storeInOutboxStandalone } from './outbox/writer.js';
import { createPublisher } from './publishers/create-publisher.js';
import { createRedisClient, type RedisClient } from './redis.js';

export interface ManagerDeps {
  /** Postgres pool; created from `database.url` (and closed by `close()`) when omitted. */
  pool?: pg.Pool;
  /**
   * ioredis client, or `Cluster`; created from `redis` config (`redis.url`, or `redis.cluster`) and closed by `close()`
   * when omitted, on first use: a config that keeps nothing in Redis (events to pg-boss, no idempotency keys or cache
   * in Redis) never connects to it.
   */
  redis?: RedisClient;
  logger?: Logger;
  /** Where relayed events go. @defaultValue the publisher `outbox` config names (`createPublisher`) */
  publisher?: Publisher;
  /** Where the relay and idempotency report; `Metrics` (prom-client) implements both. */
  metrics?: RelayMetrics & IdempotencyMetrics & { trackStorageSize?(source: IdempotencyService): void };
}

export type { OutboxRelay };

/** Options of `Manager.createOutboxRelay`. */
export interface CreateRelayOptions {
  /** @defaultValue the manager's metrics */
  metrics?: RelayMetrics;
  relayId?: string;
  /** Claim connections of the Postgres relay. @defaultValue the manager's pool */
  pool?: pg.Pool;
  /** Test-only crash switch of the Postgres relay (`TestFault.fromEnv`, built by the CLI). */
  testFault?: AfterPushHook;
}

/**
 * The main interface, as in the reference document (docs/reference-api.md): outbox writing and publishing, idempotent processing, stats.
 * Owns the connections it creates; `close()` (or `await using`) releases them.
 *
 * @example
 * const manager = new Manager(loadConfig());
 * await manager.publishOutboxEvents();
 * await manager.close();
 */
export class Manager {
  readonly config: Config;
  readonly pool: pg.Pool;
  readonly logger: Logger;
  readonly publisher: Publisher;
  /** The idempotency service; `undefined` when `idempotency.enabled` is false. */
  readonly idempotency: IdempotencyService | undefined;
  readonly #owned: (() => Promise<unknown>)[] = [];
  #redis: RedisClient | undefined;
  /** The Redis client was created here (so `close()` disconnects it). */
  #ownsRedis = false;
  readonly #relay: OutboxRelay;
  /** What operators see of the outbox (admin API, CLI): Postgres or Redis, as `outbox.storage_type` says. */
  readonly outboxInspector: OutboxInspector;
  readonly #metrics: ManagerDeps['metrics'];

  constructor(config: Config, deps: ManagerDeps = {}) {
    this.config = config;
    this.logger = deps.logger ?? silentLogger;
    this.#metrics = deps.metrics;
    if (deps.pool) this.pool = deps.pool;
    else {
      this.pool = createPool(config.database.url, this.logger, {
        ...poolTimeouts(config.database),
        max: config.idempotency.storage.database.maxConnections,
      });
      this.#owned.push(() => this.pool.end());
    }
    this.#redis = deps.redis;
    const redis = () => this.redis;
    this.publisher =
      deps.publisher ??
      createPublisher(config, {
        // Read only by the Redis publishers: a pg-boss publisher leaves the client uncreated.
        get redis() {
          return redis();
        },
        logger: this.logger,
        ...(deps.metrics ? { onRoundTrip: (s: number) => deps.metrics?.redisRoundTrip(s) } : {}),
      });
    // A publisher with connections of its own (pg-boss) that we created is ours to close.
    const { publisher } = this;
    if (!deps.publisher && publisher.close) this.#owned.push(() => publisher.close?.() ?? Promise.resolve());
    this.#relay = this.createOutboxRelay();
    this.outboxInspector = createOutboxInspector(config, { pool: () => this.pool, redis: () => this.redis });
    if (config.idempotency.enabled) {
      const service = new IdempotencyService({
        config,
        pool: this.pool,
        // Only a store that keeps keys (or its cache) in Redis gets the client: creating it connects.
        ...(idempotencyRedisUse(config.idempotency) ? { redis: this.redis } : {}),
        logger: this.logger,
        ...(deps.metrics ? { metrics: deps.metrics } : {}),
      });
      this.idempotency = service;
      deps.metrics?.trackStorageSize?.(service);
      // Closed before the connections it uses.
      this.#owned.push(() => service.close());
    } else {
      this.idempotency = undefined;
    }
  }

  /**
   * The Redis client: the one given in `deps`, else one created from `redis` config on first use.
   */
  get redis(): RedisClient {
    if (!this.#redis) {
      this.#redis = createRedisClient(this.config.redis, this.logger);
      this.#ownsRedis = true;
    }
    return this.#redis;
  }

  /**
   * A deterministic key: the same inputs give the same key, so a redelivered job finds its first run.
   *
   * @example const key = manager.generateIdempotencyKey('file-processing', '', job.id);
   */
  generateIdempotencyKey(queueName: string, tenantId: string, ...suffix: string[]): IdempotencyKey {
    return this.#service().generateIdempotencyKey(queueName, tenantId, ...suffix);
  }

  /**
   * Run `processor` at most once per key; duplicates get `{ duplicate: true, result }` with the first run's result.
   * The processor gets `{ signal }`, which fires if the key's lease is lost (see `IdempotencyService`).
   *
   * @example
   * const { duplicate, result } = await manager.processWithIdempotency(key, () => processFile(job));
   */
  processWithIdempotency<T>(
    key: IdempotencyKey,
    processor: Processor<T>,
    options?: ProcessOptions,
  ): Promise<ProcessResult<T>> {
    return this.#service().processWithIdempotency(key, processor, options);
  }

  /**
   * The transactional form: `processor(trx)` runs inside the Postgres transaction that records the key, so its
   * writes happen exactly once. Needs `idempotency.storage.type: database`.
   *
   * @example await manager.processInTransaction(key, (trx) => trx.insertInto('payments').values(p).execute());
   */
  // biome-ignore lint/suspicious/noExplicitAny: the caller's database schema type, when it has one
  processInTransaction<T, DB = any>(
    key: IdempotencyKey,
    processor: TransactionalProcessor<T, DB>,
    options?: ProcessOptions,
  ): Promise<ProcessResult<T>> {
    return this.#service().processInTransaction(key, processor, options);
  }

  /** Lifecycle hooks (`beforeProcessing`, `afterProcessing`, `onDuplicate`), in registration order. Returns an unregister function. */
  registerHook(hook: ProcessingHook): () => void {
    return this.#service().registerHook(hook);
  }

  /** Deduplication counters across every process sharing the store; tenant omitted = all tenants of the queue. */
  getDedupStats(queueName: string, tenantId?: string): Promise<DedupStats> {
    return this.#service().getDedupStats(queueName, tenantId);
  }

  #service(): IdempotencyService {
    if (!this.idempotency) throw new FeatureDisabledError('idempotency');
    return this.idempotency;
  }

  /**
   * Write events into the outbox inside your transaction (a Kysely `Transaction` or a pg client after `BEGIN`), with
   * this config's destination allow-list (`outbox.allowed_queues`). See `storeInOutbox`.
   *
   * @example await manager.storeInOutbox(trx, { aggregateId: 'user-123', eventType: 'user.created', payload: { id: 123 } });
   */
  storeInOutbox(trx: unknown, event: NewOutboxEvent): Promise<OutboxEvent>;
  storeInOutbox(trx: unknown, events: readonly NewOutboxEvent[]): Promise<OutboxEvent[]>;
  storeInOutbox(
    trx: unknown,
    events: NewOutboxEvent | readonly NewOutboxEvent[],
  ): Promise<OutboxEvent | OutboxEvent[]> {
    return storeInOutbox(trx, events as NewOutboxEvent[], this.config.outbox);
  }

  /**
   * Write events on their own, in a transaction of their own on this manager's pool (no business write to share it
   * with). See `storeInOutboxStandalone`.
   *
   * @example await manager.storeInOutboxStandalone({ aggregateId: 'user-123', eventType: 'user.invited', payload: {} });
   */
  storeInOutboxStandalone(event: NewOutboxEvent): Promise<OutboxEvent>;
  storeInOutboxStandalone(events: readonly NewOutboxEvent[]): Promise<OutboxEvent[]>;
  storeInOutboxStandalone(events: NewOutboxEvent | readonly NewOutboxEvent[]): Promise<OutboxEvent | OutboxEvent[]> {
    return storeInOutboxStandalone(this.pool, events as NewOutboxEvent[], this.config.outbox);
  }

  /** Publish every event that is due now, in batches, and say what happened. Safe next to running relays. */
  publishOutboxEvents(): Promise<PublishSummary> {
    return this.#relay.publishDue();
  }

  /**
   * A relay sharing this manager's publisher and (unless `pool` is given) its pool; call `start()` on it to run the
   * daemon loop. It reports to the manager's `metrics` unless `metrics` is given, so every relay a process runs is
   * counted (a relay created without them would publish while `/metrics` said 0).
   *
   * @example const relay = manager.createRelay(); await relay.start();
   */
  createRelay(options: CreateRelayOptions = {}): Relay {
    if (this.config.outbox.storageType === 'redis') {
      throw new TypeError(
        'createRelay() relays the Postgres outbox; with outbox.storage_type: redis use createOutboxRelay()',
      );
    }
    const metrics = options.metrics ?? this.#metrics;
    return new Relay({
      config: this.config,
      pool: options.pool ?? this.pool,
      publisher: this.publisher,
      logger: this.logger,
      ...(metrics ? { metrics } : {}),
      ...(options.relayId ? { relayId: options.relayId } : {}),
      ...(options.testFault ? { testFault: options.testFault } : {}),
    });
  }

  /**
   * The relay of the outbox `outbox.storage_type` names: `createRelay()`'s Postgres relay, or a `RedisOutboxRelay` on
   * this manager's Redis (which must hold both the outbox keys and the destination lists).
   *
   * @example const relay = manager.createOutboxRelay(); await relay.start();
   */
  createOutboxRelay(options: CreateRelayOptions = {}): OutboxRelay {
    if (this.config.outbox.storageType !== 'redis') return this.createRelay(options);
    const metrics = options.metrics ?? this.#metrics;
    return new RedisOutboxRelay({
      config: this.config,
      redis: this.redis,
      logger: this.logger,
      ...(metrics ? { metrics } : {}),
      ...(options.relayId ? { relayId: options.relayId } : {}),
    });
  }

  async close(): Promise<void> {
    await this.#relay.stop().catch(() => {});
    for (const release of this.#owned.reverse()) await release().catch(() => {});
    this.#owned.length = 0;
    if (this.#ownsRedis) this.#redis?.disconnect();
    this.#ownsRedis = false;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
