/**
 * The Postgres outbox's tables and functions (migrations/0008 and 0009; docs/outbox-storage.md has the design).
 * Everything under src/outbox/postgres/ names them from here.
 */

/** Events, written once by producers; LIST-partitioned into a ring (`part`) that retention truncates. */
export const EVENTS_TABLE = 'exactly_once_outbox_events';
/** The exceptions: events waiting for a retry, the events behind them, and failed events. */
export const PARKED_TABLE = 'exactly_once_outbox_parked';
/** The lanes' cursors, one row per lane per committed batch (append-only; compacted by TRUNCATE). */
export const PROGRESS_TABLE = 'exactly_once_outbox_progress';
/** Events written per minute and destination, per relay: the dashboard's rate chart. */
export const TRAFFIC_TABLE = 'exactly_once_outbox_traffic';
/** One row per lane; relays lock them FOR UPDATE SKIP LOCKED. */
export const LANES_TABLE = 'exactly_once_outbox_lanes';
/** The outbox's id, the lane and partition counts, the ring's pointer. */
export const META_TABLE = 'exactly_once_outbox_meta';
/** When each partition of the ring opened and closed. */
export const PARTS_TABLE = 'exactly_once_outbox_parts';
/** The old table's shape as a view, status derived from the cursors (operators' queries, plain-SQL producers). */
export const OUTBOX_VIEW = 'exactly_once_outbox';

export const CLAIM_FUNCTION = 'exactly_once_outbox_claim';
export const ADVANCE_FUNCTION = 'exactly_once_outbox_advance';
export const COMPACT_FUNCTION = 'exactly_once_outbox_compact_progress';
export const ROTATE_FUNCTION = 'exactly_once_outbox_rotate';

/** NOTIFY channel the insert trigger (migrations/0005's function, on the events table since 0008) signals. */
export const OUTBOX_CHANNEL = 'exactly_once_outbox';
