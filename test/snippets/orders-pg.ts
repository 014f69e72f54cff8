// README "Writing events", with pg: the app's `pool`, the order's `id` and `total`, and `storeInOutbox` (the Kysely
// block just before imports it).
import { storeInOutbox } from 'exactly-once';
import pg from 'pg';

export const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
await pool.query('CREATE TABLE IF NOT EXISTS orders (id text PRIMARY KEY, total int NOT NULL)');
export const id = crypto.randomUUID();
export const total = 1999;
export { storeInOutbox };
