// The public API of exactly-once. Everything a user imports comes from here.

export { formatDuration, parseDuration } from './config/duration.js';
export type { Config, LoadConfigOptions } from './config/load-config.js';
export { configFromObject, defaultConfig, loadConfig } from './config/load-config.js';
export type { SqlExecutor } from './db/executor.js';
export { fromKysely, fromPg } from './db/executor.js';
export type { MigrationStatus } from './db/migrator.js';
export { createMigrator, migrateDown, migrateToLatest, migrationStatus } from './db/migrator.js';
export {
  ConfigError,
  ExactlyOnceError,
  FeatureDisabledError,
  IdempotencyInProgressError,
  IdempotencyKeyMismatchError,
  MigrationError,
  NotMigratedError,
  OutboxEventValidationError,
  UnsupportedExecutorError,
} from './errors.js';
export type { Logger } from './logger.js';
export { createLogger } from './logger.js';
export type { ManagerDeps } from './manager.js';
export { Manager } from './manager.js';
export type { BackoffPolicy } from './outbox/backoff.js';
export { backoffDelay } from './outbox/backoff.js';
export type { PublishSummary, RelayMetrics, RelayOptions } from './outbox/relay.js';
export { Relay } from './outbox/relay.js';
export type {
  ClaimedEvent,
  NewOutboxEvent,
  OutboxEvent,
  OutboxStatus,
  Publisher,
  PublishOutcome,
} from './outbox/types.js';
export { storeInOutbox } from './outbox/writer.js';
export type { Job } from './publishers/job.js';
export type { RedisListPublisherOptions } from './publishers/redis-list.js';
export { PublishUnavailableError, RedisListPublisher } from './publishers/redis-list.js';
