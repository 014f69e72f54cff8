import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { Config } from './config/load-config.js';
import { createPool } from './db/pool.js';
import { type Logger, silentLogger } from './logger.js';
import { Relay, type RelayMetrics, type PublishSummary } from './outbox/relay.js';
import type { NewOutboxEvent, OutboxEvent, Publisher } from './outbox/types.js';
import { storeInOutbox } from './outbox/writer.js';
import { RedisListPublisher } from './publishers/redis-list.js';
import { createRedis } from './redis.js';

export interface ManagerDeps {
  /** Postgres pool; created from `database.url` (and closed by `close()`) when omitted. */
  pool?: pg.Pool;
  /** ioredis client; created from `redis.url` (and closed by `close()`) when omitted. */
  redis?: Redis;
  logger?: Logger;
  /** Where relayed events go. @defaultValue a RedisListPublisher configured from `outbox` */
  publisher?: Publisher;
  metrics?: RelayMetrics;
}

/**
 * The main interface, as in the reference document: outbox writing and publishing, idempotent processing, stats.
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
  readonly redis: Redis;
  readonly logger: Logger;
  readonly publisher: Publisher;
  readonly #owned: (() => Promise<unknown>)[] = [];
  readonly #relay: Relay;

  constructor(config: Config, deps: ManagerDeps = {}) {
    this.config = config;
    this.logger = deps.logger ?? silentLogger;
    if (deps.pool) this.pool = deps.pool;
    else {
      this.pool = createPool(config.database.url, this.logger, { max: config.idempotency.storage.database.maxConnections });
      this.#owned.push(() => this.pool.end());
    }
    if (deps.redis) this.redis = deps.redis;
    else {
      this.redis = createRedis(config.redis.url, this.logger);
      this.#owned.push(async () => this.redis.disconnect());
    }
    this.publisher =
      deps.publisher ??
      new RedisListPublisher(this.redis, {
        queuePattern: config.outbox.queuePattern,
        defaultPriority: config.outbox.defaultPriority,
        dedupWindowMs: config.outbox.dedupWindow,
        timeoutMs: config.outbox.publishTimeout,
        ...(deps.metrics ? { onRoundTrip: (s: number) => deps.metrics?.redisRoundTrip(s) } : {}),
      });
    this.#relay = this.createRelay(deps.metrics ? { metrics: deps.metrics } : {});
  }

  /**
   * Write events into the outbox inside your transaction (Kysely or pg). See `storeInOutbox`.
   *
   * @example await manager.storeInOutbox(trx, { aggregateId: 'user-123', eventType: 'user.created', payload: { id: 123 } });
   */
  storeInOutbox(trx: unknown, event: NewOutboxEvent): Promise<OutboxEvent>;
  storeInOutbox(trx: unknown, events: readonly NewOutboxEvent[]): Promise<OutboxEvent[]>;
  storeInOutbox(trx: unknown, events: NewOutboxEvent | readonly NewOutboxEvent[]): Promise<OutboxEvent | OutboxEvent[]> {
    return storeInOutbox(trx, events as NewOutboxEvent[]);
  }

  /** Publish every event that is due now, in batches, and say what happened. Safe next to running relays. */
  publishOutboxEvents(): Promise<PublishSummary> {
    return this.#relay.publishDue();
  }

  /** A relay sharing this manager's pool and publisher; call `start()` on it to run the daemon loop. */
  createRelay(options: { metrics?: RelayMetrics; relayId?: string } = {}): Relay {
    return new Relay({
      config: this.config,
      pool: this.pool,
      publisher: this.publisher,
      logger: this.logger,
      ...options,
    });
  }

  async close(): Promise<void> {
    for (const release of this.#owned.reverse()) await release().catch(() => {});
    this.#owned.length = 0;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
