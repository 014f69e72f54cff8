// The public API of exactly-once. Everything a user imports comes from here.

export type { AdminBackend, AdminIdempotency, AdminOptions } from './admin/backend.js';
export { HttpErrorCode } from './admin/http-errors.js';
export { exactlyOnceAdmin } from './admin/plugin.js';
export type { AdminServerHandle, AdminServerOptions } from './admin/server.js';
export { startAdminServer } from './admin/server.js';
export type { OperationsHandle, OperationsOptions } from './admin/start-operations.js';
export { startOperations } from './admin/start-operations.js';
export { formatDuration, parseDuration } from './config/duration.js';
export type { Config, LoadConfigOptions } from './config/load-config.js';
export { configFromObject, defaultConfig, loadConfig } from './config/load-config.js';
export type { SqlExecutor } from './db/executor.js';
export { fromKysely, fromPg } from './db/executor.js';
export type { MigrationStatus } from './db/migrator.js';
export { createMigrator, migrateDown, migrateToLatest, migrationStatus } from './db/migrator.js';
export {
  AdminUnauthorizedError,
  CircuitOpenError,
  ConfigError,
  ExactlyOnceError,
  FeatureDisabledError,
  IdempotencyHookAbortedError,
  IdempotencyInProgressError,
  IdempotencyKeyExistsError,
  IdempotencyKeyInvalidError,
  IdempotencyKeyMismatchError,
  IdempotencyKeyNotFoundError,
  IdempotencyLeaseLostError,
  IdempotencyStorageError,
  IdempotencyTransactionUnsupportedError,
  InvalidParameterError,
  MaintenanceError,
  MigrationError,
  NotMigratedError,
  OutboxDuplicateIdError,
  OutboxEventValidationError,
  OutboxQueueNotAllowedError,
  OutboxTransactionRequiredError,
  PublishUnavailableError,
  ServiceUnreachableError,
  UnsupportedExecutorError,
} from './errors.js';
export type {
  CheckOutcome,
  CreateRecordInput,
  DedupStats,
  IdempotencyKey,
  IdempotencyMetrics,
  IdempotencyRecord,
  IdempotencyServiceOptions,
  IdempotencyStore,
  ProcessingHook,
  ProcessOptions,
  Processor,
  ProcessorContext,
  ProcessResult,
  TransactionalProcessor,
} from './idempotency/index.js';
export {
  createIdempotencyStore,
  DatabaseStore,
  generateIdempotencyKey,
  HotCacheStore,
  IdempotencyService,
  MemoryStore,
  RedisStore,
} from './idempotency/index.js';
export type { Logger } from './logger.js';
export { createLogger } from './logger.js';
export type { CleanupDeps, CleanupReport, CleanupRequest, IdempotencyCleaner } from './maintenance/run-cleanup.js';
export { runCleanup } from './maintenance/run-cleanup.js';
export type { MaintenanceHandle, MaintenanceOptions, ScheduledRun } from './maintenance/scheduler.js';
export { startMaintenance } from './maintenance/scheduler.js';
export type { ManagerDeps } from './manager.js';
export { Manager } from './manager.js';
export type { MetricsOptions } from './metrics/metrics.js';
export { Metrics } from './metrics/metrics.js';
export type { DestinationOptions, DestinationPolicy } from './outbox/allowed-queues.js';
export { destinationPolicy, isAllowedDestination } from './outbox/allowed-queues.js';
export type { BackoffPolicy } from './outbox/backoff.js';
export { backoffDelay } from './outbox/backoff.js';
export type { CleanupOutboxOptions, CleanupOutboxResult } from './outbox/cleanup.js';
export { cleanupOutbox } from './outbox/cleanup.js';
export type { ListOutboxOptions, OutboxBacklog, OutboxPage, RetryResult, RetrySelection } from './outbox/inspect.js';
export { listOutboxEvents, outboxBacklog, retryOutboxEvents } from './outbox/inspect.js';
export type { PublishSummary, RelayHealth, RelayMetrics, RelayOptions } from './outbox/relay.js';
export { Relay } from './outbox/relay.js';
export type {
  ClaimedEvent,
  NewOutboxEvent,
  OutboxEvent,
  OutboxStatus,
  Publisher,
  PublishOutcome,
} from './outbox/types.js';
export type { StoreInOutboxOptions } from './outbox/writer.js';
export { storeInOutbox, storeInOutboxStandalone } from './outbox/writer.js';
export type { PublisherDeps } from './publishers/create-publisher.js';
export { createPublisher } from './publishers/create-publisher.js';
export type { Job } from './publishers/job.js';
export type { RedisListPublisherOptions } from './publishers/redis-list.js';
export { RedisListPublisher } from './publishers/redis-list.js';
export type { RedisStreamPublisherOptions } from './publishers/redis-stream.js';
export { RedisStreamPublisher, STREAM_FIELDS } from './publishers/redis-stream.js';
export type { RedisClient, RedisClientOptions } from './redis.js';
export { createRedisClient } from './redis.js';
