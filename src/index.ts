/**
 * The main entry, `exactly-once`: what an application that writes events needs, and nothing that would make its
 * import heavy (no Redis client, HTTP server, metrics registry or scheduler: those live behind the subpaths in
 * src/entries/, see README "Public API"). It loads kysely, zod and yaml; pg comes with the caller's own client.
 *
 * @module exactly-once
 */

export { formatDuration, parseDuration } from './config/duration.js';
export type { Config, LoadConfigOptions } from './config/load-config.js';
export { configFromObject, defaultConfig, loadConfig } from './config/load-config.js';
export type { SqlExecutor } from './db/executor.js';
export type { MigrationStatus } from './db/migrator.js';
export { createMigrator, migrateDown, migrateToLatest, migrationStatus } from './db/migrator.js';
export {
  AdminForeignOriginError,
  AdminHostNotAllowedError,
  AdminPortInUseError,
  AdminReadOnlyError,
  AdminUnauthorizedError,
  CircuitOpenError,
  ConfigError,
  DeadLetterNotFoundError,
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
  OutboxEventNotFoundError,
  OutboxEventValidationError,
  OutboxMultiRequiredError,
  OutboxQueueNotAllowedError,
  OutboxTransactionRequiredError,
  PublishUnavailableError,
  RedisEvictionPolicyError,
  ServiceUnreachableError,
  UnsupportedExecutorError,
  WorkerHandlerError,
} from './errors.js';
export type { IdempotencyKey } from './idempotency/keys.js';
export { generateIdempotencyKey } from './idempotency/keys.js';
export type { Logger } from './logger.js';
export type { DestinationOptions, DestinationPolicy } from './outbox/allowed-queues.js';
export { destinationPolicy, isAllowedDestination } from './outbox/allowed-queues.js';
export type { NewOutboxEvent, OutboxEvent, OutboxStatus } from './outbox/types.js';
export type { StoreInOutboxOptions } from './outbox/writer.js';
export { storeInOutbox, storeInOutboxStandalone } from './outbox/writer.js';
