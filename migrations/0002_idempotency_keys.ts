import { type Kysely, sql } from 'kysely';
import { loadConfig } from '../src/config/load-config.js';

/**
 * The idempotency table (`exactly_once.idempotency.storage.database.table_name`, default `idempotency_keys`) and its
 * counters table (`<table>_stats`).
 *
 * The table name is read with `loadConfig()` when the migration runs, i.e. from `EXACTLY_ONCE_CONFIG`; a CLI that takes
 * `--config` must export that path as `EXACTLY_ONCE_CONFIG` before migrating. Renaming the table later needs a migration
 * of your own (this one records that it ran, not which name it used).
 *
 * - Primary key `(queue_name, tenant_id, key_id)`: the arbiter of `INSERT ... ON CONFLICT`; it also serves lookups by
 *   queue (+ tenant) for stats.
 * - `_expires (expires_at)`: cleanup deletes the oldest expired rows in small batches.
 * - `claim_token`: identifies the claim holder, so a caller whose lease was taken over cannot complete or release it.
 * - Stats are counters per queue+tenant, incremented in batches by every process (see src/idempotency/stats-buffer.ts).
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the app's schema type
export async function up(db: Kysely<any>): Promise<void> {
  const table = tableName();
  await sql`
    CREATE TABLE ${sql.table(table)} (
      queue_name       text        NOT NULL,
      tenant_id        text        NOT NULL DEFAULT '',
      key_id           text        NOT NULL,
      status           text        NOT NULL CHECK (status IN ('in_progress', 'completed')),
      result           jsonb,
      fingerprint      text,
      claim_token      text,
      lease_expires_at timestamptz,
      created_at       timestamptz NOT NULL DEFAULT now(),
      expires_at       timestamptz NOT NULL,
      PRIMARY KEY (queue_name, tenant_id, key_id)
    )`.execute(db);
  await sql`CREATE INDEX ${sql.id(`${table}_expires`)} ON ${sql.table(table)} (expires_at)`.execute(db);
  await sql`
    CREATE TABLE ${sql.table(`${table}_stats`)} (
      queue_name         text        NOT NULL,
      tenant_id          text        NOT NULL DEFAULT '',
      total_requests     bigint      NOT NULL DEFAULT 0,
      duplicates_avoided bigint      NOT NULL DEFAULT 0,
      updated_at         timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (queue_name, tenant_id)
    )`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  const table = tableName();
  await sql`DROP TABLE IF EXISTS ${sql.table(`${table}_stats`)}`.execute(db);
  await sql`DROP TABLE IF EXISTS ${sql.table(table)}`.execute(db);
}

function tableName(): string {
  return loadConfig().idempotency.storage.database.tableName;
}
