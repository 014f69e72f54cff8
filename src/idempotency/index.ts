export { createIdempotencyStore } from './create-store.js';
export { DatabaseStore } from './database-store.js';
export type { ProcessingHook } from './hooks.js';
export { HOT_CACHE_TIMEOUT_MS, HotCacheStore } from './hot-cache-store.js';
export type { IdempotencyKey, KeyRef } from './keys.js';
export { DEFAULT_KEY_TTL_MS, generateIdempotencyKey, validateKey } from './keys.js';
export { MemoryStore } from './memory-store.js';
export type { CheckOutcome, IdempotencyMetrics } from './metrics.js';
export { IdempotencyService } from './processor.js';
export { RedisStore } from './redis-store.js';
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
export type { IdempotencyRecord, IdempotencyStore, RecordStatus, StoreKind } from './types.js';
