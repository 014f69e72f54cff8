import type { SqlExecutor } from '../../db/executor.js';
import { InvalidParameterError } from '../../errors.js';
import { queryOutbox } from './queries.js';
import { PARKED_TABLE, ROTATE_FUNCTION, TRAFFIC_TABLE } from './tables.js';

export interface CleanupOutboxOptions {
  /** Keep events at least this long, in milliseconds (config `outbox.cleanup_after`). */
  olderThanMs: number;
  /** How long a truncation waits for a partition a session still writes into before leaving it for the next run. @defaultValue 1000 */
  lockTimeoutMs?: number;
}

export interface CleanupOutboxResult {
  /** Events dropped: the rows of the truncated partitions, and failed events deleted from the parked table. */
  deleted: number;
  /** Partitions truncated. */
  batches: number;
  /** The ring's pointer moved on to an empty partition. */
  rotated: boolean;
}

/** The ring has 8 partitions (migrations/0008): the current one, up to 6 kept, and one free to rotate into. */
const KEPT_PARTITIONS = 6;
/** Per-minute traffic rows are for the dashboard's last 15 minutes; an hour is kept. */
const TRAFFIC_KEEP = '1 hour';

/**
 * Retention of the write-once outbox, a partition at a time (migrations/0009's `exactly_once_outbox_rotate`): moves
 * the ring's pointer on to an empty partition once the current one is `olderThanMs / 6` old, and TRUNCATEs each
 * partition that closed more than `olderThanMs` ago once every lane has handled its events. No row of history is
 * deleted one by one, and nothing is left for VACUUM. So an event is kept at least `olderThanMs`, and at most about
 * `olderThanMs` plus the time between two cleanups plus `olderThanMs / 6`. Pending events are never dropped: a
 * partition holding one waits. Failed events live in the parked table and are deleted once older than `olderThanMs`.
 *
 * @example await cleanupOutbox(pool, { olderThanMs: config.outbox.cleanupAfter });
 */
export async function cleanupOutbox(db: SqlExecutor, options: CleanupOutboxOptions): Promise<CleanupOutboxResult> {
  const { olderThanMs } = options;
  const lockTimeoutMs = options.lockTimeoutMs ?? 1000;
  if (!Number.isFinite(olderThanMs) || olderThanMs < 0) {
    throw new InvalidParameterError('olderThanMs', 'must be a duration >= 0');
  }
  const keep = Math.round(olderThanMs);
  const { rows } = await queryOutbox<{ truncated: number[]; dropped: string; rotated: boolean }>(
    db,
    `SELECT * FROM ${ROTATE_FUNCTION}($1::bigint, $2::bigint, $3::integer)`,
    [Math.floor(keep / KEPT_PARTITIONS), keep, Math.max(1, Math.round(lockTimeoutMs))],
  );
  const parked = await queryOutbox<{ n: number }>(
    db,
    `WITH gone AS (
       DELETE FROM ${PARKED_TABLE}
        WHERE status = 'failed' AND created_at < now() - make_interval(secs => $1::float8 / 1000) RETURNING 1)
     SELECT count(*)::int AS n FROM gone`,
    [keep],
  );
  await queryOutbox(db, `DELETE FROM ${TRAFFIC_TABLE} WHERE minute < now() - interval '${TRAFFIC_KEEP}'`);
  const r = rows[0];
  return {
    deleted: Number(r?.dropped ?? 0) + (parked.rows[0]?.n ?? 0),
    batches: r?.truncated.length ?? 0,
    rotated: r?.rotated ?? false,
  };
}
