/**
 * `exactly-once/maintenance`: operator tasks on the outbox and the idempotency keys — cleanup, its once-per-cluster
 * schedule, and listing and replaying outbox events (what the admin API and the operator CLI call). Postgres only.
 *
 * @module exactly-once/maintenance
 */

export type { CleanupDeps, CleanupReport, CleanupRequest, IdempotencyCleaner } from '../maintenance/run-cleanup.js';
export { runCleanup } from '../maintenance/run-cleanup.js';
export type { MaintenanceHandle, MaintenanceOptions, ScheduledRun } from '../maintenance/scheduler.js';
export { startMaintenance } from '../maintenance/scheduler.js';
export type { ListOutboxOptions, OutboxBacklog, OutboxPage, RetryResult, RetrySelection } from '../outbox/inspect.js';
export type { CleanupOutboxOptions, CleanupOutboxResult } from '../outbox/postgres/cleanup.js';
export { cleanupOutbox } from '../outbox/postgres/cleanup.js';
export { listOutboxEvents, outboxBacklog, retryOutboxEvents } from '../outbox/postgres/inspect.js';
