// README "Redis Streams", consuming: the consumer's own connection, its stream, group and name, how long an entry may
// stay unacknowledged, `toObject`, a Manager and `applyEffect`, the entry's effect.
import { loadConfig } from 'exactly-once';
import { Manager } from 'exactly-once/manager';
import { Redis } from 'ioredis';
import { sql, type Transaction } from 'kysely';

export const manager = new Manager(loadConfig());
export const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
export const stream = 'audit:orders';
export const group = 'ledger';
export const me = `consumer-${process.pid}`;
export const claimIdleMs = 30_000;
export function toObject(fields: string[]): Record<string, string> {
  const entry: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) entry[fields[i] as string] = fields[i + 1] as string;
  return entry;
}
export async function applyEffect(trx: Transaction<unknown>, entry: Record<string, string>): Promise<void> {
  await sql`SELECT ${entry.id}::text`.execute(trx);
}
