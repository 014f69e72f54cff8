// The public face of src/idempotency/ (the `exactly-once/idempotency` entry re-exports it as it is): the service and
// its types. The stores are not in it: `idempotency.storage` chooses them, through create-store.ts.
export type { ProcessingHook } from './hooks.js';
export type { IdempotencyKey } from './keys.js';
export { DEFAULT_KEY_TTL_MS, generateIdempotencyKey } from './keys.js';
export type { CheckOutcome, IdempotencyMetrics } from './metrics.js';
export { IdempotencyService } from './service.js';
export type {
  CreateRecordInput,
  DedupStats,
  IdempotencyServiceOptions,
  ProcessOptions,
  Processor,
  ProcessorContext,
  ProcessResult,
} from './service-types.js';
export type { TransactionalProcessor } from './transactional.js';
export type { IdempotencyRecord, RecordStatus, StoreKind } from './types.js';
