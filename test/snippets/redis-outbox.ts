// README "The outbox in Redis": the app's ioredis client, its config (outbox.storage_type: redis), the order's `id`
// and the event's `payload`, and `storeInOutbox`.
import { configFromObject, storeInOutbox } from 'exactly-once';
import { Redis } from 'ioredis';

export const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
export const config = configFromObject({ outbox: { storage_type: 'redis' } });
export const id = crypto.randomUUID();
export const payload = { orderId: id, total: 1999 };
export { storeInOutbox };
