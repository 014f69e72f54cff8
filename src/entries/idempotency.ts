// `exactly-once/idempotency`: idempotent processing for workers, the service and its types (src/idempotency/index.ts
// lists them). The service picks its store from `idempotency.storage`. Loads ioredis and pg.

export * from '../idempotency/index.js';
