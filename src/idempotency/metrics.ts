import type { StoreKind } from './types.js';

/** What a duplicate check decided: the caller ran the processor, got a stored result, gave up waiting, or was refused. */
export type CheckOutcome = 'first' | 'duplicate' | 'in_progress' | 'mismatch';

/**
 * Callbacks the service reports to; a prom-client implementation maps them onto the reference document's (docs/reference-api.md) metrics.
 * Every method is optional, and one that throws is ignored (metrics never break processing).
 *
 * | callback | metric |
 * |---|---|
 * | `check` | `exactly_once_idempotency_checks_total{queue, outcome}` |
 * | `duplicateAvoided` | `exactly_once_duplicates_avoided_total{queue}` |
 * | `success` | `exactly_once_successful_processing_total{queue}` and `exactly_once_processing_duration_seconds{queue}` |
 * | `failure` | `exactly_once_processing_duration_seconds{queue}` (processor threw) |
 * | `storageError` | `exactly_once_storage_errors_total{queue, operation}` |
 * | `storageOperation` | `exactly_once_storage_operations_total{operation, backend}` |
 *
 * `exactly_once_storage_size` is a gauge: read it from `IdempotencyService.storageSize()` at collection time.
 *
 * @example
 * const metrics: IdempotencyMetrics = { duplicateAvoided: (queue) => duplicates.inc({ queue }) };
 * const service = new IdempotencyService({ config, metrics });
 */
export interface IdempotencyMetrics {
  check?(queueName: string, outcome: CheckOutcome): void;
  duplicateAvoided?(queueName: string): void;
  success?(queueName: string, seconds: number): void;
  failure?(queueName: string, seconds: number): void;
  /** `operation` is a store operation (`claim`, `complete`, ...) or a cache one (`cache_get`, `cache_set`, ...). */
  storageError?(queueName: string, operation: string): void;
  storageOperation?(operation: string, backend: StoreKind): void;
}
