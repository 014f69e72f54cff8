import { type Kysely, sql } from 'kysely';

/**
 * Ring the relays' doorbell (NOTIFY) only when no relay is awake.
 *
 * 0001 sent a NOTIFY from every inserting statement. A committing transaction that sent a NOTIFY holds a
 * database-wide lock until its commit record is flushed, so under load producers committed one at a time (measured at
 * 1,000 events/s on 2 cores: producer commit p99 43 ms with the NOTIFY, 13 ms without). Relays hold the shared
 * advisory lock `(hashtext('exactly_once_outbox_awake'), 0)` while they drain (src/outbox/doorbell.ts); this trigger
 * notifies only if it can take that lock exclusively (released at once), i.e. when every relay sleeps.
 *
 * Still one statement-level trigger: we also tried a deferred per-row constraint trigger (decide at COMMIT, once per
 * transaction through a transaction-local setting) to narrow the gap between "is a relay awake?" and the commit; it
 * made producers markedly slower under load (commit-to-Redis p50 ~35 ms against ~5 ms at 1,000 events/s). The gap is
 * covered instead by the relay's quick polls after it lets go of the lock, and by `poll_interval`.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the app's schema type
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION exactly_once_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF pg_try_advisory_lock(hashtext('exactly_once_outbox_awake'), 0) THEN
        PERFORM pg_advisory_unlock(hashtext('exactly_once_outbox_awake'), 0);
        PERFORM pg_notify('exactly_once_outbox', '');
      END IF;
      RETURN NULL;
    END
    $$`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION exactly_once_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('exactly_once_outbox', '');
      RETURN NULL;
    END
    $$`.execute(db);
}
