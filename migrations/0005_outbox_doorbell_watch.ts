import { type Kysely, sql } from 'kysely';

/**
 * The doorbell without wake-up holes (issue 8 item 2). 0004's trigger had two:
 *
 * 1. A producer that saw a relay awake skipped the NOTIFY, and if it then did more work before COMMIT (50-400 ms in
 *    the report) while the relay ran out of work and went to sleep, its event waited for `poll_interval`.
 * 2. The trigger asked "is any relay awake?" by trying the awake lock *exclusively*, so a second producer inside the
 *    trigger at the same moment made the try fail; the first one's NOTIFY was then the only bell, and if that
 *    transaction rolled back, nobody rang at all.
 *
 * Now two locks, both under new names (so a relay of the 0004 design and this trigger, or the reverse, only ever
 * cause extra NOTIFYs, never missing ones):
 *
 * - `exactly_once_outbox_watch`: held EXCLUSIVELY (session lock) by at most one relay, the "watchman", while it
 *   drains. The trigger probes it with a SHARED try-lock, released at once: shared never conflicts with shared, so
 *   producers can no longer make each other's probe fail; only a watchman does. Probe succeeded -> no watchman ->
 *   NOTIFY. Probe failed -> the watchman is awake -> skip the NOTIFY (the throughput 0004 bought is kept).
 * - `exactly_once_outbox_producer`: every inserting transaction takes it SHARED, transaction-scoped, *before* the
 *   probe, and holds it until it commits or rolls back. Nobody ever takes it exclusively (relays read pg_locks), so it
 *   never blocks anyone. A watchman that runs out of work first releases the watch lock, then reads the holders of
 *   this lock and keeps claiming until every one of them has ended (src/outbox/doorbell.ts has the argument why no
 *   commit can fall between the two).
 *
 * Per inserting statement this costs one shared lock acquisition more than 0004. Measured (4 producer connections
 * committing single-event transactions, 0004 and 0005 in alternating blocks of 1,200, on the loaded 2-core dev
 * machine): no difference beyond the run-to-run noise, with a relay watching 293-434 tx/s (0004) against 321-445
 * (0005), with none 143-273 against 192-249. Skipping the NOTIFY still doubles producer throughput, as in 0004.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the app's schema type
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE OR REPLACE FUNCTION exactly_once_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      -- "A producer is in flight" until this transaction ends; taken before the probe below, never exclusive.
      PERFORM pg_advisory_xact_lock_shared(hashtext('exactly_once_outbox_producer'), 0);
      -- Is a watchman (a draining relay) awake? Shared probe: other producers never make it fail.
      IF pg_try_advisory_lock_shared(hashtext('exactly_once_outbox_watch'), 0) THEN
        PERFORM pg_advisory_unlock_shared(hashtext('exactly_once_outbox_watch'), 0);
        PERFORM pg_notify('exactly_once_outbox', '');
      END IF;
      RETURN NULL;
    END
    $$`.execute(db);
}

/** Back to 0004's function (the trigger itself is 0001's and stays). */
// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
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
