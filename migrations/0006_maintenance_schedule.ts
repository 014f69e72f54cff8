import { type Kysely, sql } from 'kysely';

/**
 * `exactly_once_maintenance`: one row per scheduled cleanup type (`idempotency`, `outbox`), the cluster's single
 * timetable (src/maintenance/scheduler.ts). Every relay sleeps until `next_run_at` and then tries one `UPDATE ...
 * WHERE next_run_at <= now() AND lease is free`: the row lock lets exactly one replica win each tick, and the lease
 * (`running_by`, `lease_until`, renewed while the run lasts) keeps the next tick from starting on another replica
 * before this one has finished. A crashed runner's lease simply expires.
 *
 * `next_run_at` moves on a fixed grid of `interval_ms` (the exact configured interval: `90m` is 90 minutes, `7d` is
 * seven days), so the schedule neither drifts with run time nor bursts after an outage (missed ticks collapse into one).
 * `last_*` columns are for operators: when cleanup last ran, on which replica, and how it ended.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the app's schema type
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE exactly_once_maintenance (
      type             text        PRIMARY KEY,
      interval_ms      bigint      NOT NULL CHECK (interval_ms > 0),
      next_run_at      timestamptz NOT NULL,
      running_by       text,
      lease_until      timestamptz,
      last_started_at  timestamptz,
      last_finished_at timestamptz,
      last_error       text
    )`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS exactly_once_maintenance`.execute(db);
}
