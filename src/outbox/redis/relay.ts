import { randomBytes } from 'node:crypto';
import type { Config } from '../../config/load-config.js';
import { type Logger, silentLogger } from '../../logger.js';
import type { RedisClient } from '../../redis.js';
import type { RelayHealth } from '../circuit-breaker.js';
import { type OutboxRelay, RelayCore, type RelayMetrics } from '../relay-core.js';
import type { PublishSummary } from '../summary.js';
import { Wakeup } from '../wakeup.js';
import { RedisOutboxStorage } from './storage.js';

export interface RedisOutboxRelayOptions {
  config: Config;
  /** The server (or cluster) holding both the outbox keys and the destination lists. */
  redis: RedisClient;
  logger?: Logger;
  /** Where the relay reports (`Metrics` implements it); `cleanupRun` is fed by retention cleanup. */
  metrics?: RelayMetrics & { cleanupRun?(type: 'outbox', deleted: number, ok: boolean): void };
  /** Shown in logs. @defaultValue random */
  relayId?: string;
}

/**
 * The relay of the Redis outbox (`outbox.storage_type: redis`): the relay core (breaker, publish timeout, outage
 * backoff, retry clock, drain) over `RedisOutboxStorage` (storage.ts has how a batch runs).
 *
 * @example
 * const relay = new RedisOutboxRelay({ config, redis });
 * await relay.start();
 * process.on('SIGTERM', () => relay.stop());
 */
export class RedisOutboxRelay implements OutboxRelay {
  readonly storage = 'redis';
  readonly relayId: string;
  readonly #core: RelayCore;
  readonly #storage: RedisOutboxStorage;

  constructor(options: RedisOutboxRelayOptions) {
    const relayId = options.relayId ?? randomBytes(4).toString('hex');
    const log = (options.logger ?? silentLogger).child({ component: 'relay', relayId, storage: 'redis' });
    const wakeup = new Wakeup();
    const metrics = options.metrics;
    this.#storage = new RedisOutboxStorage({
      config: options.config,
      redis: options.redis,
      log,
      wakeup,
      token: `${relayId}:${randomBytes(6).toString('hex')}`,
      cleanupRun: metrics?.cleanupRun ? (type, deleted, ok) => metrics.cleanupRun?.(type, deleted, ok) : undefined,
      onRoundTrip: metrics ? (s) => metrics.redisRoundTrip(s) : undefined,
    });
    this.#core = new RelayCore({ config: options.config, storage: this.#storage, log, metrics, relayId, wakeup });
    this.relayId = relayId;
  }

  /** Can this relay publish? Not while its circuit breaker is open (Redis unreachable, OOM, READONLY, ...). */
  health(): RelayHealth {
    return this.#core.health();
  }

  /**
   * Run `outbox.concurrency` claim loops, woken by the doorbell (doorbell.ts) when an app's EXEC makes work due, by
   * `poll_interval` otherwise; and the retention cleanup (every `cleanup_interval`).
   */
  start(): Promise<void> {
    return this.#core.start();
  }

  stop(): Promise<void> {
    return this.#core.stop();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  wake(): void {
    this.#core.wake();
  }

  publishDue(): Promise<PublishSummary> {
    return this.#core.publishDue();
  }

  runBatch(): Promise<PublishSummary> {
    return this.#core.runBatch();
  }

  /** Delete published and failed events older than `outbox.cleanup_after`. */
  cleanup(): Promise<{ deleted: number; batches: number }> {
    return this.#storage.cleanup();
  }
}
