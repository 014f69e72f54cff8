import type { SqlExecutor } from '../../db/executor.js';
import { InvalidParameterError } from '../../errors.js';
import { UUID_RE } from '../ids.js';
import {
  DEFAULT_DESTINATIONS,
  type DestinationRule,
  decodeCursor,
  encodeCursor,
  type ListOutboxOptions,
  type OutboxBacklog,
  type OutboxPage,
  pageOptions,
  type RetryResult,
  type RetrySelection,
  validateIds,
} from '../inspect.js';
import { PAYLOAD_PREVIEW_BYTES, payloadPreview } from '../payload-preview.js';
import type { OutboxEvent } from '../types.js';
import {
  CURSOR_CTE,
  EVENT_COLUMNS,
  handledSql,
  LANES,
  notifyRelays,
  type OutboxRow,
  PARKED_COLUMNS,
  queryOutbox,
  rowToEvent,
  unhandledSql,
} from './queries.js';
import { EVENTS_TABLE, LANES_TABLE, PARKED_TABLE } from './tables.js';

/** Events per lane a backlog count looks at; beyond it the count is a lower bound (`capped`). */
export const BACKLOG_COUNT_CAP = 50_000;

/**
 * One page of outbox events in write order (oldest first, or newest first with `order: 'desc'`), for operators, with
 * each event's status as the relays see it: parked events as parked (retrying, waiting behind one, or failed); any
 * other event `published` once its lane's cursor is past it, else `pending`. Keyset pagination on `seq`, so a page
 * costs the same at the millionth row as at the first. Every filter is an exact match, combined with AND.
 *
 * Shape: each lane's `(lane, seq)` index is read on its own in page order (16 short index scans merged), plus the
 * small parked table. `status: 'pending'` reads only each lane's unhandled tail (its interval's stragglers and the walk
 * from its cursor), so it costs the size of the backlog. `aggregateType` with `aggregateId` reads only their lane. A
 * value that matches almost nothing walks each lane until the page fills, up to the admin pool's statement timeout:
 * narrow such searches with an aggregate or `status`.
 *
 * Throws `InvalidParameterError` naming the offending option.
 *
 * @example const { events, nextCursor } = await listOutboxEvents(pool, { status: 'failed', limit: 20 });
 * @example await listOutboxEvents(pool, { aggregateType: 'order', aggregateId: 'o-42', order: 'desc' });
 */
export async function listOutboxEvents(db: SqlExecutor, options: ListOutboxOptions = {}): Promise<OutboxPage> {
  const { status, limit, order } = pageOptions(options);
  const params: unknown[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const dir = order === 'asc' ? 'ASC' : 'DESC';
  const filters = filterSql(options, param);
  const after = options.cursor === undefined ? undefined : param(decodeCursor(options.cursor));
  const keyset = (a: string) =>
    after === undefined ? 'true' : `${a}.seq ${order === 'asc' ? '>' : '<'} ${after}::bigint`;
  const page = param(limit + 1);
  // Both given: the aggregate's lane is the only one to read.
  const oneLane =
    options.aggregateType !== undefined && options.aggregateId !== undefined
      ? `(hashtext(${param(options.aggregateType)}::text || '/' || ${param(options.aggregateId)}::text) & ${LANES - 1})`
      : undefined;
  const parts: string[] = [];
  if (status !== 'published') {
    const parkedStatus = status === undefined ? 'true' : `p.status = '${status}'`;
    parts.push(`(SELECT ${PARKED_COLUMNS('p')} FROM ${PARKED_TABLE} p
                  WHERE ${parkedStatus} AND ${filters('p')} AND ${keyset('p')}
                  ORDER BY p.seq ${dir} LIMIT ${page})`);
  }
  if (status !== 'failed') {
    for (let lane = 0; lane < LANES; lane++) {
      const only = oneLane ? `${lane} = ${oneLane}` : 'true';
      const where = `${only} AND ${filters('e')} AND ${keyset('e')}`;
      if (status === 'pending') {
        parts.push(`(SELECT * FROM (${unhandledSql(lane, EVENT_COLUMNS('e', 'c'), where)}) x
                      ORDER BY seq ${dir} LIMIT ${page})`);
      } else {
        const handled = status === 'published' ? handledSql('e', 'c') : 'true';
        parts.push(`(SELECT ${EVENT_COLUMNS('e', 'c')} FROM ${EVENTS_TABLE} e JOIN cursor c ON c.lane = e.lane
                      WHERE e.lane = ${lane} AND ${where} AND ${handled}
                        AND NOT EXISTS (SELECT 1 FROM ${PARKED_TABLE} p WHERE p.seq = e.seq)
                      ORDER BY e.seq ${dir} LIMIT ${page})`);
      }
    }
  }
  // Previews: the payload never leaves Postgres whole, only its first characters (at most 4 bytes each, trimmed to
  // PAYLOAD_PREVIEW_BYTES below) and its size, printed once per row of the page.
  const preview = options.payload === 'preview';
  const select = preview
    ? `u.id, u.seq, u.aggregate_type, u.aggregate_id, u.event_type, u.headers, u.metadata, u.tenant_id, u.queue,
       u.status, u.retry_count, u.max_retries, u.next_attempt_at, u.last_error, u.created_at,
       left(u.payload::text, ${param(PAYLOAD_PREVIEW_BYTES)}::int) AS payload_preview,
       octet_length(u.payload::text) AS payload_bytes`
    : 'u.*';
  const { rows } = await queryOutbox<OutboxRow & { payload_preview?: string; payload_bytes?: number }>(
    db,
    // The comment names the statement in pg_stat_activity, for operators (and the admin pool test) to find it.
    `/* exactly-once: list outbox */ WITH ${CURSOR_CTE}
     SELECT ${select} FROM (${parts.join('\nUNION ALL\n')}) u ORDER BY seq ${dir} LIMIT ${page}`,
    params,
  );
  const events = rows.slice(0, limit).map((row) => {
    if (!preview) return rowToEvent(row);
    return {
      ...rowToEvent({ ...row, payload: undefined }),
      payloadPreview: payloadPreview(row.payload_preview ?? 'null', Number(row.payload_bytes ?? 4)),
    };
  });
  const last = events[events.length - 1];
  return { events, nextCursor: rows.length > limit && last ? encodeCursor(last.seq) : null };
}

/** The listing's filters as SQL on a row alias (the events table or the parked table: both have these columns). */
function filterSql(options: ListOutboxOptions, param: (v: unknown) => string): (alias: string) => string {
  const where: ((a: string) => string)[] = [];
  for (const [column, value, name] of [
    ['aggregate_type', options.aggregateType, 'aggregateType'],
    ['aggregate_id', options.aggregateId, 'aggregateId'],
    ['event_type', options.eventType, 'eventType'],
    ['tenant_id', options.tenantId, 'tenantId'],
  ] as const) {
    if (value === undefined) continue;
    if (typeof value !== 'string') throw new InvalidParameterError(name, 'must be a string');
    const p = param(value);
    where.push((a) => `${a}.${column} = ${p}::text`);
  }
  for (const [op, value, name] of [
    ['>=', options.since, 'since'],
    ['<', options.until, 'until'],
  ] as const) {
    if (value === undefined) continue;
    if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
      throw new InvalidParameterError(name, 'must be a valid time');
    }
    const p = param(value);
    where.push((a) => `${a}.created_at ${op} ${p}::timestamptz`);
  }
  if (options.queue !== undefined) where.push(queueMatch(options.queue, options.destinations, param));
  return (alias) => (where.length === 0 ? 'true' : where.map((w) => w(alias)).join(' AND '));
}

/**
 * Events whose destination is `queue`: those naming it in their `queue` column, and, when it is one of the lists
 * `queue_pattern` produces, those without a `queue` whose priority leads there. The priorities are worked out here,
 * so the common case (a queue the pattern cannot produce) stays a plain equality.
 */
function queueMatch(
  queue: string,
  rule: DestinationRule | undefined,
  param: (v: unknown) => string,
): (alias: string) => string {
  if (typeof queue !== 'string') throw new InvalidParameterError('queue', 'must be a string');
  const { queuePattern, defaultPriority } = rule ?? DEFAULT_DESTINATIONS;
  const priorities = (['high', 'low'] as const).filter((p) => queuePattern.replaceAll('{priority}', p) === queue);
  const q = param(queue);
  if (priorities.length === 0) return (a) => `${a}.queue = ${q}::text`;
  const d = param(defaultPriority);
  const ps = param(priorities);
  return (a) =>
    `(${a}.queue = ${q}::text OR (${a}.queue IS NULL AND CASE WHEN ${a}.headers->>'priority' IN ('high', 'low')
      THEN ${a}.headers->>'priority' ELSE ${d}::text END = ANY(${ps}::text[])))`;
}

/**
 * One event by id, or `undefined`: its parked copy when it has one, else the event with its status. Throws
 * `InvalidParameterError` naming `id` when it is not a UUID.
 *
 * @example const event = await getOutboxEvent(pool, id);
 */
export async function getOutboxEvent(db: SqlExecutor, id: string): Promise<OutboxEvent | undefined> {
  if (typeof id !== 'string' || !UUID_RE.test(id)) throw new InvalidParameterError('id', 'must be a UUID');
  const { rows } = await queryOutbox<OutboxRow>(
    db,
    `WITH ${CURSOR_CTE}
     (SELECT ${PARKED_COLUMNS('p')} FROM ${PARKED_TABLE} p WHERE p.id = $1::uuid ORDER BY p.seq LIMIT 1)
     UNION ALL
     (SELECT ${EVENT_COLUMNS('e', 'c')} FROM ${EVENTS_TABLE} e JOIN cursor c ON c.lane = e.lane
       WHERE e.id = $1::uuid AND NOT EXISTS (SELECT 1 FROM ${PARKED_TABLE} p WHERE p.seq = e.seq)
       ORDER BY e.seq LIMIT 1)
     LIMIT 1`,
    [id],
  );
  return rows[0] ? rowToEvent(rows[0]) : undefined;
}

/**
 * Replay dead events: `failed` -> `pending` with `retry_count` 0 and due now, at the end of their aggregate's parked
 * queue, then `NOTIFY` so relays pick them up at once. Events in any other state are left alone (replaying a
 * published event would publish it twice). Each replay takes the lanes of the events it moves (`FOR UPDATE`, waiting
 * for a batch in flight on them): a batch never sees a replay happen under it, so a batch re-run after a crash reads
 * the same parked events as its first run (migrations/0009). `allFailed` and `error` work in batches of 1000.
 *
 * @example await retryOutboxEvents(pool, { ids: [eventId] }); await retryOutboxEvents(pool, { allFailed: true });
 * @example await retryOutboxEvents(pool, { error: 'WRONGTYPE Operation against a key holding the wrong kind of value' });
 */
export async function retryOutboxEvents(db: SqlExecutor, selection: RetrySelection): Promise<RetryResult> {
  if ('ids' in selection) {
    const ids = validateIds(selection.ids);
    const { rows } = await queryOutbox<{ id: string }>(db, replaySql('p.id = ANY($1::uuid[])'), [ids]);
    if (rows.length > 0) await notifyRelays(db);
    return { retried: rows.length, ids: rows.map((r) => r.id) };
  }
  let match = 'true';
  const params: unknown[] = [];
  if ('error' in selection) {
    const error = selection.error;
    if (error !== null && typeof error !== 'string') {
      throw new InvalidParameterError('error', 'must be a string or null');
    }
    // IS NOT DISTINCT FROM: the group of events that failed without an error text is replayable too.
    match = 'p.last_error IS NOT DISTINCT FROM $1::text';
    params.push(error);
  } else if (selection.allFailed !== true) throw new InvalidParameterError('all_failed', 'must be true');
  let retried = 0;
  for (;;) {
    const { rows } = await queryOutbox<{ id: string }>(db, replaySql(match, 1000), params);
    retried += rows.length;
    if (rows.length > 0) await notifyRelays(db);
    if (rows.length < 1000) break;
  }
  return { retried };
}

/**
 * One statement: pick failed parked rows (SKIP LOCKED: a row an operator's concurrent call holds is theirs), lock
 * their lanes in lane order (waiting), and move them to the tail of their aggregate's queue with a fresh `ord`.
 */
function replaySql(match: string, limit?: number): string {
  return `WITH pick AS MATERIALIZED (
            SELECT p.seq, p.lane FROM ${PARKED_TABLE} p WHERE p.status = 'failed' AND ${match}
             ORDER BY p.seq ${limit ? `LIMIT ${limit}` : ''} FOR UPDATE OF p SKIP LOCKED
          ), lanes AS MATERIALIZED (
            SELECT l.lane FROM ${LANES_TABLE} l WHERE l.lane IN (SELECT lane FROM pick) ORDER BY l.lane FOR UPDATE
          )
          UPDATE ${PARKED_TABLE} p
             SET status = 'pending', retry_count = 0, next_attempt_at = now(),
                 ord = nextval('exactly_once_outbox_parked_ord')
            FROM pick WHERE p.seq = pick.seq AND (SELECT count(*) FROM lanes) >= 0
          RETURNING p.id`;
}

/**
 * Backlog counters for gauges and `stats`: pending (every lane's unhandled events, plus parked ones waiting), failed
 * (parked as failed) and the oldest pending event's age. Each lane's count reads its unhandled tail only, up to
 * `BACKLOG_COUNT_CAP` events (then `pending` is a lower bound).
 *
 * @example const { pending, failed, oldestPendingAgeSeconds } = await outboxBacklog(pool);
 */
export async function outboxBacklog(db: SqlExecutor): Promise<OutboxBacklog> {
  const lanes = Array.from(
    { length: LANES },
    (_, lane) => `(SELECT count(*) AS n, min(created_at) AS oldest FROM (
                     SELECT e.created_at FROM (${unhandledSql(lane, 'e.created_at')}) e LIMIT ${BACKLOG_COUNT_CAP}) x)`,
  );
  const { rows } = await queryOutbox<{ pending: string; failed: string; age: number | null }>(
    db,
    `WITH ${CURSOR_CTE}, lanes AS (${lanes.join('\nUNION ALL\n')}),
          parked AS (SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                            count(*) FILTER (WHERE status = 'failed') AS failed,
                            min(created_at) FILTER (WHERE status = 'pending') AS oldest
                       FROM ${PARKED_TABLE})
     SELECT (SELECT sum(n) FROM lanes) + (SELECT pending FROM parked) AS pending,
            (SELECT failed FROM parked) AS failed,
            extract(epoch FROM now() - LEAST((SELECT min(oldest) FROM lanes), (SELECT oldest FROM parked)))::float8 AS age`,
  );
  const row = rows[0];
  return {
    pending: Number(row?.pending ?? 0),
    failed: Number(row?.failed ?? 0),
    oldestPendingAgeSeconds: Math.max(0, row?.age ?? 0),
  };
}
