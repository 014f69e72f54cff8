import { type Kysely, sql } from 'kysely';

/**
 * The idempotency table `idempotency_keys` and its counters table `idempotency_keys_stats`.
 *
 * The names are fixed here, never read from config or the environment: a migration must do the same thing wherever
 * and whenever it runs, and `migrate down` must drop what `up` created. A deployment that sets
 * `idempotency.storage.database.table_name` to another name creates that table itself with the DDL in
 * docs/operations.md ("The idempotency table under another name"); until it exists the store fails with
 * `EO_NOT_MIGRATED` naming it.
 *
 * - Primary key `(queue_name, tenant_id, key_id)`: the arbiter of `INSERT ... ON CONFLICT`; it also serves lookups by
 *   queue (+ tenant) for stats.
 * - `_expires (expires_at)`: cleanup deletes the oldest expired rows in small batches.
 * - `claim_token`: identifies the claim holder, so a caller whose lease was taken over cannot complete or release it.
 * - Stats are counters per queue+tenant, incremented in batches by every process (see src/idempotency/stats-buffer.ts).
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the app's schema type
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE idempotency_keys (
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
  await sql`CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at)`.execute(db);
  await sql`
    CREATE TABLE idempotency_keys_stats (
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
  await sql`DROP TABLE IF EXISTS idempotency_keys_stats`.execute(db);
  await sql`DROP TABLE IF EXISTS idempotency_keys`.execute(db);
}
