import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Config } from '../../config/load-config.js';
import { type Logger, silentLogger } from '../../logger.js';
import type { RelayHealth } from '../circuit-breaker.js';
import { type OutboxRelay, RelayCore, type RelayMetrics } from '../relay-core.js';
import type { PublishSummary } from '../summary.js';
import type { Publisher } from '../types.js';
import { Wakeup } from '../wakeup.js';
import { type AfterPushHook, PostgresOutboxStorage } from './storage.js';

export interface RelayOptions {
  config: Config;
  /** Connections for claim transactions; one per concurrent batch is in use at a time (two with the overlap). */
  pool: pg.Pool;
  publisher: Publisher;
  logger?: Logger;
  metrics?: RelayMetrics;
  /** Shown in logs. @defaultValue random */
  relayId?: string;
  /** Test-only crash switch (`TestFault.fromEnv`, built by the CLI); never set in production. */
  testFault?: AfterPushHook;
}

/**
 * Moves committed outbox events into Redis (or pg-boss). Run as many relays as you like, in one process
 * (`concurrency`) or many: they share the lanes through Postgres row locks and keep each aggregate's events in
 * write order.
 *
 * @example
 * const relay = new Relay({ config, pool, publisher: new RedisListPublisher(redis) });
 * await relay.start();            // LISTEN/NOTIFY wake-ups, poll_interval fallback
 * process.on('SIGTERM', () => relay.stop());
 */
export class Relay implements OutboxRelay {
  readonly storage = 'postgres';
  readonly relayId: string;
  readonly #core: RelayCore;
  readonly #storage: PostgresOutboxStorage;

  constructor(options: RelayOptions) {
    const relayId = options.relayId ?? randomBytes(4).toString('hex');
    const log = (options.logger ?? silentLogger).child({ component: 'relay', relayId });
    const wakeup = new Wakeup();
    this.#storage = new PostgresOutboxStorage({
      config: options.config,
      pool: options.pool,
      publisher: options.publisher,
      log,
      wakeup,
      testFault: options.testFault,
      relayId,
    });
    this.#core = new RelayCore({
      config: options.config,
      storage: this.#storage,
      log,
      metrics: options.metrics,
      relayId,
      wakeup,
    });
    this.relayId = relayId;
  }

  health(): RelayHealth {
    return this.#core.health();
  }

  /** Check the schema, start listening for NOTIFY and run `outbox.concurrency` claim loops. */
  start(): Promise<void> {
    return this.#core.start();
  }

  /** Throw `NotMigratedError` if the outbox tables are missing. */
  async assertMigrated(): Promise<void> {
    await this.#storage.outboxId();
  }

  /** Finish the batches in flight, then stop. Resolves once no claim is held; safe to call twice. */
  stop(): Promise<void> {
    return this.#core.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  wake(): void {
    this.#core.wake();
  }

  /** Publish everything due right now and return what happened (the library's `publishOutboxEvents`). */
  publishDue(): Promise<PublishSummary> {
    return this.#core.publishDue();
  }

  /** One claim -> publish -> commit transaction. Throws on an outage; `CircuitOpenError` while the breaker is open. */
  runBatch(): Promise<PublishSummary> {
    return this.#core.runBatch();
  }
}
