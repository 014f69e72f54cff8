/**
 * `exactly-once/idempotency`: idempotent processing for workers, the service and its types (src/idempotency/index.ts
 * lists them). The service picks its store from `idempotency.storage`. Loads ioredis and pg.
 *
 * @module exactly-once/idempotency
 */

export * from '../idempotency/index.js';
