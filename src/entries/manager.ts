/**
 * `exactly-once/manager`: the Manager, the reference document's (docs/reference-api.md) main interface — writing and publishing the outbox
 * plus idempotent processing behind one object — and the root logger to give it. It holds a relay and an idempotency
 * service, so it loads what both load (ioredis, pg, pino); it does not load fastify or prom-client.
 *
 * @module exactly-once/manager
 */

export { createLogger } from '../logger.js';
export type { ManagerDeps, OutboxRelay } from '../manager.js';
export { Manager } from '../manager.js';
