// README "pg-boss destination", the worker: a Manager of the app's config and `applyOrder`, the job's effect.
import { loadConfig } from 'exactly-once';
import { Manager } from 'exactly-once/manager';
import { sql, type Transaction } from 'kysely';

export const manager = new Manager(loadConfig());
export async function applyOrder(trx: Transaction<unknown>, payload: unknown): Promise<void> {
  await sql`SELECT ${JSON.stringify(payload)}::jsonb`.execute(trx);
}
