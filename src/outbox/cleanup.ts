import type { SqlExecutor } from '../db/executor.js';
import { InvalidParameterError } from '../errors.js';
import { queryOutbox } from './inspect.js';
import { OUTBOX_TABLE } from './rows.js';

export interface CleanupOutboxOptions {
  /** Delete published/failed events older than this many milliseconds (config `outbox.cleanup_after`). */
  olderThanMs: number;
  /** Rows looked at (and at most deleted) per statement. @defaultValue 1000 */
  batchSize?: number;
}

export interface CleanupOutboxResult {
  deleted: number;
  /** Statements run; each is its own short transaction. */
  batches: number;
}

/**
 * Delete retained history: `published` and `failed` events created (and, if published, published) more than
 * `olderThanMs` ago. `pending` events are never deleted, however old.
 *
 * Shape: there is no index on the timestamps, and `ORDER BY seq LIMIT n` filtered on age would scan the whole
 * table once fewer than n old rows remain (every run, on a table that retains millions of rows). Instead each
 * statement takes the next window of `batchSize` rows in `seq` order (index range scan from a keyset cursor),
 * deletes the old finished ones in it, and the loop stops at the first window with no row older than the
 * cutoff: `seq` follows write time, so everything after it is newer. Old pending rows are stepped over.
 * Rows are re-checked on the target (`o.status`), so an event an operator replays meanwhile is left alone.
 *
 * @example await cleanupOutbox(pool, { olderThanMs: config.outbox.cleanupAfter });
 */
export async function cleanupOutbox(db: SqlExecutor, options: CleanupOutboxOptions): Promise<CleanupOutboxResult> {
  const { olderThanMs } = options;
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isFinite(olderThanMs) || olderThanMs < 0) {
    throw new InvalidParameterError('olderThanMs', 'must be a duration >= 0');
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new InvalidParameterError('batchSize', 'must be a positive integer');
  }
  const { rows: nowRows } = await db.query<{ cutoff: Date }>(
    `SELECT now() - make_interval(secs => $1::float8 / 1000) AS cutoff`,
    [olderThanMs],
  );
  const cutoff = nowRows[0]?.cutoff;
  let after = '0';
  let deleted = 0;
  let batches = 0;
  for (;;) {
    const { rows } = await queryOutbox<{ last_seq: string | null; any_old: boolean | null; deleted: number }>(
      db,
      `WITH win AS (
         SELECT seq, created_at FROM ${OUTBOX_TABLE} WHERE seq > $1::bigint ORDER BY seq LIMIT $2
       ), del AS (
         DELETE FROM ${OUTBOX_TABLE} o USING win
          WHERE o.seq = win.seq
            AND o.status IN ('published', 'failed')
            AND o.created_at < $3
            AND (o.published_at IS NULL OR o.published_at < $3)
          RETURNING 1
       )
       SELECT (SELECT max(seq) FROM win)::text AS last_seq,
              (SELECT bool_or(created_at < $3) FROM win) AS any_old,
              (SELECT count(*) FROM del)::int AS deleted`,
      [after, batchSize, cutoff],
    );
    batches += 1;
    const row = rows[0];
    deleted += row?.deleted ?? 0;
    if (!row?.last_seq || !row.any_old) break;
    after = row.last_seq;
  }
  return { deleted, batches };
}
