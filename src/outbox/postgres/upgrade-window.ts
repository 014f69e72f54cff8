import type { SqlExecutor } from '../../db/executor.js';
import { EVENTS_TABLE, OUTBOX_VIEW } from './tables.js';

/**
 * Producers across the upgrade to the write-once storage (migrations/0008). A producer of this version may start
 * before `exactly-once migrate` has run: its database still has the previous row-state table `exactly_once_outbox`,
 * and it must keep writing there, then move to the new tables once they exist, without a restart and without a
 * failed business transaction in between. So the writer asks once which storage the database has; until the new
 * one appears it writes with statements that work on both the old table and the view of the same name that replaces
 * it (an INSERT without ON CONFLICT: the view has no unique index to name, and its INSTEAD OF trigger writes the
 * event into the new tables), and asks again every few seconds. Once the new tables are seen, for the rest of the
 * process's life, one statement straight into them. (Producers of the previous version cannot write through the
 * view, whose ON CONFLICT they need: that is why CHANGELOG.md asks to deploy this version's producers first.)
 */

/** How often a producer that found the previous storage looks again. */
const RECHECK_MS = 5000;

let writeOnce = false;
let checkedAt = Number.NEGATIVE_INFINITY;

/** Whether the caller's database has the write-once tables (one cheap look, at most every RECHECK_MS until it has). */
export async function hasWriteOnceStorage(executor: SqlExecutor): Promise<boolean> {
  if (writeOnce) return true;
  const now = performance.now();
  if (now - checkedAt < RECHECK_MS) return false;
  const { rows } = await executor.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [EVENTS_TABLE]);
  checkedAt = now;
  writeOnce = rows[0]?.ok === true;
  return writeOnce;
}

const COLUMNS =
  'id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue, max_retries';

/**
 * The batch statement on either storage. No ON CONFLICT: an id a concurrent transaction commits while this one waits
 * raises 23505 on the old table (only caller-chosen ids can clash, and only in the upgrade window).
 */
export const TRANSITION_INSERT_SQL = `
  INSERT INTO ${OUTBOX_VIEW} (${COLUMNS})
  SELECT id, aggregate_type, aggregate_id, event_type, payload::jsonb, headers::jsonb, metadata::jsonb, tenant_id,
         queue, max_retries
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
              $9::text[], $10::int[])
    AS e(${COLUMNS})
  WHERE NOT EXISTS (SELECT 1 FROM ${OUTBOX_VIEW} o WHERE o.id = ANY($11::uuid[]))
  RETURNING id, seq, created_at`;

/** One event with a generated id (UUIDv7: no clash to guard against) on either storage. */
export const TRANSITION_INSERT_ONE_SQL = `
  INSERT INTO ${OUTBOX_VIEW} (${COLUMNS})
  VALUES ($1::uuid, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9, $10::int)
  RETURNING id, seq, created_at`;

/** Which of `ids` are stored, on either storage. */
export const TRANSITION_TAKEN_SQL = `SELECT id FROM ${OUTBOX_VIEW} WHERE id = ANY($1::uuid[])`;
