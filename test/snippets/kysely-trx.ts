// README "Redis Streams", the destination header: `trx`, a Kysely transaction of the app's, the event's `payload`, and
// the config file the block's comment describes (EXACTLY_ONCE_CONFIG, as the app would set it).
import { writeFileSync } from 'node:fs';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';

writeFileSync(
  'destination-header.yaml',
  'exactly_once:\n  outbox:\n    allowed_queues: ["jobqueue:billing", "audit:*"]\n',
);
process.env.EXACTLY_ONCE_CONFIG = 'destination-header.yaml';
const db = new Kysely<unknown>({
  dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: process.env.DATABASE_URL }) }),
});
export const trx = await db.startTransaction().execute();
export const payload = { orderId: 'order-1', total: 1999 };
