// README "Exactly-once effects in Postgres": a Manager, the `job` being processed (its payload as the app's producer
// wrote it) and its idempotency `key`, `storeInOutbox` (imported in an earlier block), and the app's shipments table.
import { loadConfig, storeInOutbox } from 'exactly-once';
import { Manager } from 'exactly-once/manager';

export const manager = new Manager(loadConfig());
await manager.pool.query('CREATE TABLE IF NOT EXISTS shipments ("orderId" text PRIMARY KEY)');
export const job = { id: crypto.randomUUID(), tenant_id: '', payload: { orderId: crypto.randomUUID() } };
export const key = manager.generateIdempotencyKey('shipping', job.tenant_id, job.id);
export { storeInOutbox };
