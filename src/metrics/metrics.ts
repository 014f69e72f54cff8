import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Config } from '../config/load-config.js';
import type { SqlExecutor } from '../db/executor.js';
import type { CheckOutcome, IdempotencyMetrics } from '../idempotency/index.js';
import { type Logger, silentLogger } from '../logger.js';
import type { OutboxBacklog } from '../outbox/inspect.js';
import { outboxBacklog } from '../outbox/postgres/inspect.js';
import type { RelayMetrics } from '../outbox/relay-core.js';
import { withTimeout } from '../timeout.js';
import type { JobOutcome, WorkerMetrics } from '../worker/metrics.js';
import { LabelLimiter } from './label-limiter.js';
import { WorkerCounters } from './worker-metrics.js';

export type MetricsConfig = Config['metrics'];

export interface MetricsOptions {
  /** `metrics` section of the config: `histogram_buckets`, `cardinality_limit`, `collection_interval`. */
  config?: Pick<MetricsConfig, 'histogramBuckets' | 'cardinalityLimit' | 'collectionInterval'>;
  /** Postgres pool for the outbox backlog gauges, read at scrape time. Without it those gauges stay absent. */
  pool?: SqlExecutor;
  /**
   * Where the backlog gauges are read instead of `pool`: the Redis outbox's inspector (`outbox.storage_type: redis`).
   * @defaultValue the Postgres outbox through `pool`
   */
  backlog?: () => Promise<OutboxBacklog>;
  /** Default Node process metrics (`process_*`, `nodejs_*`). @defaultValue true */
  processMetrics?: boolean;
  /** Labels on every series, e.g. `{ instance_role: 'relay' }`. */
  defaultLabels?: Record<string, string>;
  logger?: Logger;
}

export type CleanupType = 'idempotency' | 'outbox';

/** Where `exactly_once_storage_size` is read from at scrape time: the idempotency service. */
export interface StorageSizeSource {
  storageSize(): Promise<number>;
  readonly store?: { readonly kind: string };
}

const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];
// A Redis round trip on a LAN is sub-millisecond; the config buckets (from 1 ms) would put every sample in the first.
const ROUND_TRIP_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];
const NON_COUNTER_TOTALS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];
/** A scrape waits at most this long for a gauge's query, then reports the last value. */
const COLLECT_TIMEOUT_MS = 2000;

/**
 * Every Prometheus metric this package records, on a registry of its own (never prom-client's global one, so two
 * instances in one process never collide and a user's registry stays theirs). Implements the relay's
 * `RelayMetrics` and the idempotency service's `IdempotencyMetrics` hooks; hand the same instance to both.
 *
 * The names are the reference document's (docs/reference-api.md); `queue` and `tenant` labels are capped by `cardinality_limit`
 * (further values collapse into `other`). Backlog gauges are refreshed when scraped, at most once per
 * `collection_interval`, with one cheap query (see `outboxBacklog`).
 *
 * @example
 * const metrics = new Metrics({ config: config.metrics, pool });
 * const relay = startRelay({ ..., metrics });
 * res.type(metrics.contentType).send(await metrics.text());
 */
export class Metrics implements RelayMetrics, IdempotencyMetrics, WorkerMetrics {
  readonly registry: Registry;
  readonly #labels: LabelLimiter;
  readonly #pool: SqlExecutor | undefined;
  readonly #backlogSource: (() => Promise<OutboxBacklog>) | undefined;
  readonly #intervalMs: number;
  readonly #logger: Logger;
  #backlog: OutboxBacklog | undefined;
  #backlogAt = 0;
  #backlogRefresh: Promise<void> | undefined;
  #sizeSource: StorageSizeSource | undefined;
  #sizeAt = 0;
  /** Set while `text()` renders gauges it has just refreshed, so their collect() does not query again. */
  #prefetched = false;

  readonly processingDuration: Histogram<'queue' | 'result'>;
  readonly duplicatesAvoided: Counter<'queue'>;
  readonly successfulProcessing: Counter<'queue'>;
  readonly storageErrors: Counter<'queue' | 'operation'>;
  readonly idempotencyChecks: Counter<'queue' | 'outcome'>;
  readonly outboxPublishedTotal: Counter;
  readonly outboxFailedTotal: Counter;
  readonly outboxRetriedTotal: Counter;
  readonly outboxDuplicatesTotal: Counter;
  readonly relayCircuitState: Gauge;
  readonly outboxProcessingDuration: Histogram;
  readonly storageOperations: Counter<'operation' | 'backend'>;
  readonly storageSizeGauge: Gauge<'backend'>;
  readonly outboxBacklogGauge: Gauge<'status'>;
  readonly outboxOldestPendingAge: Gauge;
  readonly outboxBatchSize: Histogram;
  readonly redisRoundTripSeconds: Histogram;
  readonly maintenanceRuns: Counter<'type' | 'result'>;
  readonly maintenanceDeleted: Counter<'type'>;
  readonly redisPersistenceEnabled: Gauge<'redis'>;
  /** The worker's (`exactly-once/worker`) jobs, reaped jobs and jobs in flight. */
  readonly worker: WorkerCounters;

  constructor(options: MetricsOptions = {}) {
    const config = options.config;
    const buckets = [...(config?.histogramBuckets ?? [0.001, 0.01, 0.1, 1, 10])];
    this.#labels = new LabelLimiter(config?.cardinalityLimit ?? 1000);
    this.#pool = options.pool;
    this.#backlogSource = options.backlog;
    this.#intervalMs = config?.collectionInterval ?? 30_000;
    this.#logger = options.logger ?? silentLogger;
    this.registry = new Registry();
    const registers = [this.registry];
    if (options.defaultLabels) this.registry.setDefaultLabels(options.defaultLabels);
    if (options.processMetrics !== false) {
      collectDefaultMetrics({ register: this.registry });
      // These three are gauges named like counters, which `promtool check metrics` rejects; the per-type gauges
      // without the suffix (`nodejs_active_handles{type}`, ...) carry the same numbers.
      for (const name of NON_COUNTER_TOTALS) this.registry.removeSingleMetric(name);
    }

    this.processingDuration = new Histogram({
      name: 'exactly_once_processing_duration_seconds',
      help: 'Time the processor of processWithIdempotency ran, by outcome (success | error).',
      labelNames: ['queue', 'result'],
      buckets,
      registers,
    });
    this.duplicatesAvoided = new Counter({
      name: 'exactly_once_duplicates_avoided_total',
      help: 'Jobs not processed again because their idempotency key had already completed.',
      labelNames: ['queue'],
      registers,
    });
    this.successfulProcessing = new Counter({
      name: 'exactly_once_successful_processing_total',
      help: 'Processor runs that completed and stored their result.',
      labelNames: ['queue'],
      registers,
    });
    this.storageErrors = new Counter({
      name: 'exactly_once_storage_errors_total',
      help: 'Failed storage operations (idempotency stores and cache, outbox queries), by queue and operation.',
      labelNames: ['queue', 'operation'],
      registers,
    });
    this.idempotencyChecks = new Counter({
      name: 'exactly_once_idempotency_checks_total',
      help: 'Idempotency key checks, by outcome (first | duplicate | in_progress | mismatch).',
      labelNames: ['queue', 'outcome'],
      registers,
    });
    this.outboxPublishedTotal = new Counter({
      name: 'exactly_once_outbox_published_total',
      help: 'Outbox events pushed to their destination (including ones found already pushed by an earlier attempt).',
      registers,
    });
    this.outboxFailedTotal = new Counter({
      name: 'exactly_once_outbox_failed_total',
      help: 'Outbox events marked failed after exhausting their retries (dead events).',
      registers,
    });
    this.outboxRetriedTotal = new Counter({
      name: 'exactly_once_outbox_retried_total',
      help: 'Failed publish attempts of outbox events that were scheduled for another attempt.',
      registers,
    });
    this.outboxDuplicatesTotal = new Counter({
      name: 'exactly_once_outbox_duplicates_total',
      help: 'Outbox events found already written (their high-water mark said so: an earlier attempt of their batch wrote them and died before COMMIT); not written again, counted as published.',
      registers,
    });
    this.relayCircuitState = new Gauge({
      name: 'exactly_once_relay_circuit_state',
      help: "The relay's publish circuit breaker: 0 closed (publishing), 1 half-open (one trial batch), 2 open (no claims).",
      registers,
    });
    this.outboxProcessingDuration = new Histogram({
      name: 'exactly_once_outbox_processing_duration_seconds',
      help: 'Time one relay batch took from claim to commit.',
      buckets,
      registers,
    });
    this.storageOperations = new Counter({
      name: 'exactly_once_storage_operations_total',
      help: 'Storage operations of the idempotency store, by operation and backend.',
      labelNames: ['operation', 'backend'],
      registers,
    });
    this.storageSizeGauge = new Gauge({
      name: 'exactly_once_storage_size',
      help: 'Live idempotency records stored, by backend, read at scrape time.',
      labelNames: ['backend'],
      registers,
      collect: () => this.#collectStorageSize(),
    });
    this.outboxBacklogGauge = new Gauge({
      name: 'exactly_once_outbox_backlog_events',
      help: 'Outbox events waiting (pending) or dead (failed), read from Postgres at scrape time.',
      labelNames: ['status'],
      registers,
      collect: () => this.#collectBacklog(),
    });
    this.outboxOldestPendingAge = new Gauge({
      name: 'exactly_once_outbox_oldest_pending_age_seconds',
      help: 'Age of the oldest pending outbox event (0 when none is pending), read at scrape time.',
      registers,
      collect: () => this.#collectBacklog(),
    });
    this.outboxBatchSize = new Histogram({
      name: 'exactly_once_outbox_batch_size',
      help: 'Events per relay batch.',
      buckets: BATCH_SIZE_BUCKETS,
      registers,
    });
    this.redisRoundTripSeconds = new Histogram({
      name: 'exactly_once_redis_round_trip_seconds',
      help: 'Time of one Redis publish round trip of the relay.',
      buckets: ROUND_TRIP_BUCKETS,
      registers,
    });
    this.maintenanceRuns = new Counter({
      name: 'exactly_once_maintenance_runs_total',
      help: 'Cleanup runs this process executed, by type (idempotency | outbox) and result (ok | error).',
      labelNames: ['type', 'result'],
      registers,
    });
    this.maintenanceDeleted = new Counter({
      name: 'exactly_once_maintenance_deleted_total',
      help: 'Rows or keys deleted by cleanup, by type.',
      labelNames: ['type'],
      registers,
    });
    this.redisPersistenceEnabled = new Gauge({
      name: 'exactly_once_redis_persistence_enabled',
      help:
        'Whether the destination Redis (label: host:port) persists every job (AOF with appendfsync everysec or ' +
        'always): 1 yes, 0 no (a Redis restart loses jobs already marked published). Checked at relay start; absent ' +
        'in processes that never checked.',
      labelNames: ['redis'],
      registers,
    });
    this.worker = new WorkerCounters(this.registry, buckets, (queue) => this.#queue(queue));
  }

  /** Content-Type of `text()`, for the HTTP response. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text for a `/metrics` response. Never rejects because Postgres is down. */
  async text(): Promise<string> {
    // Refresh the database-backed gauges first, so an error they count shows in this scrape, not the next one
    // (counters render before the gauges' own collect() runs). collect() still refreshes for direct registry users.
    await Promise.all([this.#collectBacklog(), this.#collectStorageSize()]);
    this.#prefetched = true;
    try {
      return await this.registry.metrics();
    } finally {
      this.#prefetched = false;
    }
  }

  // --- RelayMetrics (src/outbox/relay.ts) ---

  outboxPublished(count: number): void {
    if (count > 0) this.outboxPublishedTotal.inc(count);
  }

  outboxFailed(count: number): void {
    if (count > 0) this.outboxFailedTotal.inc(count);
  }

  outboxRetried(count: number): void {
    if (count > 0) this.outboxRetriedTotal.inc(count);
  }

  outboxDuplicates(count: number): void {
    if (count > 0) this.outboxDuplicatesTotal.inc(count);
  }

  breakerState(state: 'closed' | 'open' | 'half_open'): void {
    this.relayCircuitState.set(state === 'closed' ? 0 : state === 'half_open' ? 1 : 2);
  }

  outboxBatch(size: number, seconds: number): void {
    this.outboxBatchSize.observe(size);
    this.outboxProcessingDuration.observe(seconds);
  }

  redisRoundTrip(seconds: number): void {
    this.redisRoundTripSeconds.observe(seconds);
  }

  // --- IdempotencyMetrics (src/idempotency/metrics.ts) ---

  check(queueName: string, outcome: CheckOutcome): void {
    this.idempotencyChecks.inc({ queue: this.#queue(queueName), outcome });
  }

  duplicateAvoided(queueName: string): void {
    this.duplicatesAvoided.inc({ queue: this.#queue(queueName) });
  }

  success(queueName: string, seconds: number): void {
    const queue = this.#queue(queueName);
    this.processingDuration.observe({ queue, result: 'success' }, seconds);
    this.successfulProcessing.inc({ queue });
  }

  failure(queueName: string, seconds: number): void {
    this.processingDuration.observe({ queue: this.#queue(queueName), result: 'error' }, seconds);
  }

  storageError(queueName: string, operation: string): void {
    this.storageErrors.inc({ queue: this.#queue(queueName), operation });
  }

  storageOperation(operation: string, backend: string): void {
    this.storageOperations.inc({ operation, backend });
  }

  /**
   * Read `exactly_once_storage_size` from this source at scrape time (at most once per `collection_interval`).
   * The service takes the metrics in its constructor, so it is attached afterwards.
   *
   * @example const service = new IdempotencyService({ config, metrics }); metrics.trackStorageSize(service);
   */
  trackStorageSize(source: StorageSizeSource): void {
    this.#sizeSource = source;
    this.#sizeAt = 0;
  }

  /** The relay's start-up check of the destination Redis (see `checkRedisPersistence`). */
  redisPersistence(redis: string, durable: boolean): void {
    this.redisPersistenceEnabled.set({ redis }, durable ? 1 : 0);
  }

  // --- WorkerMetrics (src/worker/metrics.ts) ---

  workerJob(queue: string, outcome: JobOutcome, seconds: number): void {
    this.worker.workerJob(queue, outcome, seconds);
  }

  workerReaped(count: number): void {
    this.worker.workerReaped(count);
  }

  workerInFlight(count: number): void {
    this.worker.workerInFlight(count);
  }

  // --- maintenance ---

  cleanupRun(type: CleanupType, deleted: number, ok: boolean): void {
    this.maintenanceRuns.inc({ type, result: ok ? 'ok' : 'error' });
    if (deleted > 0) this.maintenanceDeleted.inc({ type }, deleted);
  }

  #queue(queue: string): string {
    return this.#labels.value('queue', queue);
  }

  async #collectStorageSize(): Promise<void> {
    const source = this.#sizeSource;
    if (!source || this.#prefetched || Date.now() - this.#sizeAt < this.#intervalMs) return;
    try {
      const size = await collectWithin(source.storageSize(), 'idempotency storage size');
      this.storageSizeGauge.set({ backend: source.store?.kind ?? 'unknown' }, size);
      this.#sizeAt = Date.now();
    } catch (err) {
      this.storageErrors.inc({ queue: '', operation: 'storage_size' });
      this.#logger.warn({ err }, 'could not read idempotency storage size');
    }
  }

  async #collectBacklog(): Promise<void> {
    if (!this.#pool && !this.#backlogSource) return;
    if (!this.#prefetched && (!this.#backlog || Date.now() - this.#backlogAt >= this.#intervalMs)) {
      // Both backlog gauges call this per scrape; they share one query.
      this.#backlogRefresh ??= this.#refreshBacklog().finally(() => {
        this.#backlogRefresh = undefined;
      });
      await this.#backlogRefresh;
    }
    const b = this.#backlog;
    if (!b) return;
    this.outboxBacklogGauge.set({ status: 'pending' }, b.pending);
    this.outboxBacklogGauge.set({ status: 'failed' }, b.failed);
    this.outboxOldestPendingAge.set(b.oldestPendingAgeSeconds);
  }

  async #refreshBacklog(): Promise<void> {
    try {
      const read = this.#backlogSource ? this.#backlogSource() : outboxBacklog(this.#pool as SqlExecutor);
      this.#backlog = await collectWithin(read, 'outbox backlog query');
      this.#backlogAt = Date.now();
    } catch (err) {
      // A scrape must not fail because Postgres is away: keep the last values, count and log.
      this.storageErrors.inc({ queue: '', operation: 'outbox_backlog' });
      this.#logger.warn({ err }, 'could not refresh outbox backlog gauges');
    }
  }
}

function collectWithin<T>(work: Promise<T>, what: string): Promise<T> {
  return withTimeout(work, COLLECT_TIMEOUT_MS, () => new Error(`${what} timed out`));
}
