// README "Writing events", with Kysely: the app's `db`, the `order` being placed and `req`, the HTTP request being
// served, here one without a traceparent header (the case that must not fail).
import type { IncomingMessage } from 'node:http';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';

interface Database {
  orders: { id: string; total: number };
}
export const db = new Kysely<Database>({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: process.env.DATABASE_URL }) }),
});
await sql`CREATE TABLE IF NOT EXISTS orders (id text PRIMARY KEY, total int NOT NULL)`.execute(db);
export const order = { id: crypto.randomUUID(), total: 2048 };
export const req = { headers: { 'content-type': 'application/json' } } as IncomingMessage;
