import type { SqlExecutor } from '../db/executor.js';

/** The cluster's cleanup timetable (migrations/0006_maintenance_schedule.ts). */
export const SCHEDULE_TABLE = 'exactly_once_maintenance';

/** A tick this replica won: it now holds the lease until it releases it (or the lease runs out). */
export interface ClaimedTick {
  /** The grid point this run stands for (the latest one due; earlier missed ticks collapse into it). */
  dueAt: Date;
  /** When the claim happened, on the database's clock. */
  startedAt: Date;
  /** The next grid point, already written, so no other replica can claim this tick. */
  nextRunAt: Date;
  intervalMs: number;
}

/**
 * Add the type to the timetable, or adopt the configured interval if it changed. A new row's first tick is one
 * interval from now. A changed interval takes effect from the next tick, which moves earlier if the new interval
 * ends sooner; replicas restarting with the same interval leave the timetable alone, so a rolling deploy never
 * resets it.
 */
export async function registerSchedule(pool: SqlExecutor, type: string, intervalMs: number): Promise<void> {
  await pool.query(
    `INSERT INTO ${SCHEDULE_TABLE} AS s (type, interval_ms, next_run_at)
     VALUES ($1, $2::bigint, now() + $2::float8 * interval '1 millisecond')
     ON CONFLICT (type) DO UPDATE
        SET interval_ms = EXCLUDED.interval_ms,
            next_run_at = CASE WHEN s.interval_ms = EXCLUDED.interval_ms THEN s.next_run_at
                               ELSE LEAST(s.next_run_at, EXCLUDED.next_run_at) END`,
    [type, intervalMs],
  );
}

/** Take the type off the timetable (its feature was disabled by the config deployed last). */
export async function unregisterSchedule(pool: SqlExecutor, type: string): Promise<void> {
  await pool.query(`DELETE FROM ${SCHEDULE_TABLE} WHERE type = $1`, [type]);
}

/**
 * Claim the due tick, if there is one and nobody is running this type: one statement, so when every replica wakes at
 * the same moment the row lock serialises them and the losers re-check the WHERE against the winner's row (no longer
 * due, lease taken) and update nothing. Exactly one replica runs each tick.
 *
 * `next_run_at` advances by whole intervals to the first grid point after now: a 90-minute interval runs every 90
 * minutes whatever the run took, and after an outage the missed ticks run once, not in a burst. Times come from the
 * database's clock only, so replicas with skewed clocks still agree.
 */
export async function claimTick(
  pool: SqlExecutor,
  type: string,
  runner: string,
  leaseMs: number,
): Promise<ClaimedTick | undefined> {
  const { rows } = await pool.query<{
    next_run_at: Date;
    started_at: Date;
    interval_ms: string;
  }>(
    `UPDATE ${SCHEDULE_TABLE}
        SET next_run_at = next_run_at
              + (floor(extract(epoch FROM now() - next_run_at) * 1000 / interval_ms) + 1)::float8
                * interval_ms * interval '1 millisecond',
            running_by = $2,
            lease_until = now() + $3::float8 * interval '1 millisecond',
            last_started_at = now()
      WHERE type = $1
        AND next_run_at <= now()
        AND (lease_until IS NULL OR lease_until <= now())
      RETURNING next_run_at, last_started_at AS started_at, interval_ms`,
    [type, runner, leaseMs],
  );
  const row = rows[0];
  if (!row) return undefined;
  const intervalMs = Number(row.interval_ms);
  return {
    dueAt: new Date(row.next_run_at.getTime() - intervalMs),
    startedAt: row.started_at,
    nextRunAt: row.next_run_at,
    intervalMs,
  };
}

/**
 * How long until this replica should try `claimTick` again: until the next tick, or, when a tick is due but another
 * replica holds the lease, until that lease would run out (the holder claims the due tick itself when it finishes;
 * the others only step in if it died). `undefined` when the type is not on the timetable.
 */
export async function msUntilClaimable(pool: SqlExecutor, type: string): Promise<number | undefined> {
  const { rows } = await pool.query<{ wait_ms: number }>(
    `SELECT ceil(extract(epoch FROM
              CASE WHEN next_run_at > now() THEN next_run_at ELSE coalesce(lease_until, now()) END - now()
            ) * 1000)::float8 AS wait_ms
       FROM ${SCHEDULE_TABLE} WHERE type = $1`,
    [type],
  );
  const row = rows[0];
  return row ? Math.max(0, row.wait_ms) : undefined;
}

/** Keep the lease while the run lasts. False when it is no longer ours (it ran out and another replica took over). */
export async function renewLease(pool: SqlExecutor, type: string, runner: string, leaseMs: number): Promise<boolean> {
  const { rows } = await pool.query(
    `UPDATE ${SCHEDULE_TABLE} SET lease_until = now() + $3::float8 * interval '1 millisecond'
      WHERE type = $1 AND running_by = $2 RETURNING 1`,
    [type, runner, leaseMs],
  );
  return rows.length > 0;
}

/** Give the lease back and record how the run ended. Returns the database time it finished, if the lease was ours. */
export async function releaseLease(
  pool: SqlExecutor,
  type: string,
  runner: string,
  error: string | undefined,
): Promise<Date | undefined> {
  const { rows } = await pool.query<{ finished_at: Date }>(
    `UPDATE ${SCHEDULE_TABLE}
        SET running_by = NULL, lease_until = NULL, last_finished_at = now(), last_error = $3
      WHERE type = $1 AND running_by = $2
      RETURNING last_finished_at AS finished_at`,
    [type, runner, error ?? null],
  );
  return rows[0]?.finished_at;
}
