import type { SqlExecutor } from '../db/executor.js';
import { DOORBELL_APPLICATION_NAME } from '../outbox/postgres/doorbell.js';
import { EVENTS_TABLE, PARKED_TABLE, PARTS_TABLE, PROGRESS_TABLE } from '../outbox/postgres/tables.js';

/** The ring's partitions (migrations/0008), each shown on its own: retention truncates them one at a time. */
export const EVENT_PARTITIONS = Array.from({ length: 8 }, (_, p) => `${EVENTS_TABLE}_${p}`);

// Table health for the dashboard: what Postgres' statistics views say about our tables, the transaction that holds
// cleanup back, and how much cleanup is waiting. Reads catalog views and two bounded index scans only.

export interface IndexHealth {
  name: string;
  bytes: number;
}

export interface TableHealth {
  name: string;
  totalBytes: number;
  tableBytes: number;
  indexBytes: number;
  liveTuples: number;
  deadTuples: number;
  lastVacuum: Date | null;
  lastAutovacuum: Date | null;
  lastAnalyze: Date | null;
  lastAutoanalyze: Date | null;
  indexes: IndexHealth[];
}

export interface OldestTransaction {
  ageSeconds: number;
  pid: number;
  state: string | null;
  applicationName: string | null;
  /** Transactions since this backend's snapshot horizon (`age(backend_xmin)`); vacuum keeps every row newer. */
  backendXminAge: number | null;
}

/** How far the pending-cleanup counts look before they stop (each is one bounded index scan). */
export const CLEANUP_COUNT_CAP = 100_000;

export interface TablesReport {
  tables: TableHealth[];
  oldestTransaction: OldestTransaction | null;
  cleanup: {
    /** Published and failed events older than `outbox.cleanup_after` among the oldest `CLEANUP_COUNT_CAP` events. */
    outboxRowsDue: number;
    /** Idempotency keys past `expires_at` (at most `CLEANUP_COUNT_CAP`). */
    idempotencyKeysExpired: number;
    /** Either count reached the cap: there is at least that much. */
    capped: boolean;
  };
}

export interface TablesOptions {
  /** `idempotency.storage.database.table_name`: the keys table, its `_stats` table follows it. */
  idempotencyTable: string;
  /** `outbox.cleanup_after` in ms. */
  outboxCleanupAfterMs: number;
}

/**
 * Sizes, tuple counts and (auto)vacuum times of the outbox, idempotency, idempotency stats and maintenance tables
 * (each as it exists: a table not migrated is left out), the oldest open transaction in this database (its snapshot
 * stops vacuum from removing dead rows everywhere), and the cleanup work waiting.
 *
 * @example const report = await tableHealth(pool, { idempotencyTable: 'idempotency_keys', outboxCleanupAfterMs });
 */
export async function tableHealth(db: SqlExecutor, options: TablesOptions): Promise<TablesReport> {
  const names = [
    ...EVENT_PARTITIONS,
    PARKED_TABLE,
    PROGRESS_TABLE,
    options.idempotencyTable,
    `${options.idempotencyTable}_stats`,
    'exactly_once_maintenance',
  ];
  const [tables, oldest, cleanup] = await Promise.all([
    tableStats(db, names),
    oldestTransaction(db),
    pendingCleanup(db, options),
  ]);
  return { tables, oldestTransaction: oldest, cleanup };
}

async function tableStats(db: SqlExecutor, names: string[]): Promise<TableHealth[]> {
  // The configured name may carry a schema (`app.idempotency_keys`).
  const regNames = names.map(quoteName);
  const { rows } = await db.query<{
    ord: string;
    oid: number;
    total_bytes: string;
    table_bytes: string;
    index_bytes: string;
    live: string | null;
    dead: string | null;
    last_vacuum: Date | null;
    last_autovacuum: Date | null;
    last_analyze: Date | null;
    last_autoanalyze: Date | null;
    indexes: { name: string; bytes: number }[] | null;
  }>(
    `SELECT t.ord, c.oid, pg_total_relation_size(c.oid) AS total_bytes, pg_table_size(c.oid) AS table_bytes,
            pg_indexes_size(c.oid) AS index_bytes, s.n_live_tup AS live, s.n_dead_tup AS dead,
            s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
            (SELECT json_agg(json_build_object('name', i.indexrelid::regclass::text,
                                               'bytes', pg_relation_size(i.indexrelid)) ORDER BY i.indexrelid::regclass::text)
               FROM pg_index i WHERE i.indrelid = c.oid) AS indexes
       FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord)
       JOIN pg_class c ON c.oid = to_regclass(t.name)
       LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
      ORDER BY t.ord`,
    [regNames],
  );
  return rows.map((r) => ({
    name: names[Number(r.ord) - 1] as string,
    totalBytes: Number(r.total_bytes),
    tableBytes: Number(r.table_bytes),
    indexBytes: Number(r.index_bytes),
    liveTuples: Number(r.live ?? 0),
    deadTuples: Number(r.dead ?? 0),
    lastVacuum: r.last_vacuum,
    lastAutovacuum: r.last_autovacuum,
    lastAnalyze: r.last_analyze,
    lastAutoanalyze: r.last_autoanalyze,
    indexes: (r.indexes ?? []).map((i) => ({ name: i.name, bytes: Number(i.bytes) })),
  }));
}

/**
 * The oldest open transaction of another session in this database. Only sessions of this database matter: Postgres
 * keeps dead rows of a table for snapshots taken in the same database. Sessions of other roles show only if the
 * role may read their activity (`pg_read_all_stats`); the relay and the dashboard normally share one role.
 */
async function oldestTransaction(db: SqlExecutor): Promise<OldestTransaction | null> {
  const { rows } = await db.query<{
    pid: number;
    state: string | null;
    application_name: string | null;
    age_seconds: number;
    xmin_age: number | null;
  }>(
    `SELECT pid, state, application_name, extract(epoch FROM now() - xact_start)::float8 AS age_seconds,
            age(backend_xmin) AS xmin_age
       FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
        -- the admin API's own read pool (src/cli/commands/relay.ts) runs the page's other reads at this moment;
        -- its statements end within the statement timeout, so they never hold cleanup back
        AND application_name IS DISTINCT FROM 'exactly-once admin'
      ORDER BY xact_start
      LIMIT 1`,
  );
  const r = rows[0];
  if (!r) return null;
  return {
    ageSeconds: Math.max(0, r.age_seconds),
    pid: r.pid,
    state: r.state,
    applicationName: r.application_name,
    backendXminAge: r.xmin_age === null ? null : Number(r.xmin_age),
  };
}

/**
 * Bounded counts. Outbox: the events of partitions that closed more than `cleanup_after` ago (the next cleanup
 * truncates them once every lane has handled them; counted from the planner's estimate, since counting rows would
 * cost more than dropping them), and the failed events older than that. Idempotency: the `_expires` index up to now,
 * stopped at the cap. A missing table counts 0.
 */
async function pendingCleanup(db: SqlExecutor, options: TablesOptions): Promise<TablesReport['cleanup']> {
  const keysTable = quoteName(options.idempotencyTable);
  const [{ rows }, keys] = await Promise.all([
    db.query<{ n: string }>(
      `SELECT COALESCE((SELECT sum(GREATEST(c.reltuples, 0))::bigint
                          FROM ${PARTS_TABLE} p
                          JOIN pg_class c ON c.oid = to_regclass('${EVENTS_TABLE}_' || p.part)
                         WHERE p.closed_at <= now() - make_interval(secs => $1::float8 / 1000)), 0)
            + (SELECT count(*) FROM (SELECT 1 FROM ${PARKED_TABLE}
                                      WHERE status = 'failed'
                                        AND created_at < now() - make_interval(secs => $1::float8 / 1000)
                                      LIMIT $2) f) AS n`,
      [options.outboxCleanupAfterMs, CLEANUP_COUNT_CAP],
    ),
    expiredKeys(db, keysTable),
  ]);
  const outbox = Number(rows[0]?.n ?? 0);
  return {
    outboxRowsDue: outbox,
    idempotencyKeysExpired: keys,
    capped: outbox >= CLEANUP_COUNT_CAP || keys >= CLEANUP_COUNT_CAP,
  };
}

/** `schema.table` as a quoted identifier, so case and odd characters survive `to_regclass` and the FROM clause. */
function quoteName(name: string): string {
  return name
    .split('.')
    .map((part) => `"${part.replaceAll('"', '""')}"`)
    .join('.');
}

async function expiredKeys(db: SqlExecutor, quotedTable: string): Promise<number> {
  const { rows: exists } = await db.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [quotedTable]);
  if (!exists[0]?.ok) return 0;
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM (SELECT 1 FROM ${quotedTable} WHERE expires_at <= now() LIMIT $1) k`,
    [CLEANUP_COUNT_CAP],
  );
  return Number(rows[0]?.n ?? 0);
}

/**
 * Relay processes connected to this database now: each relay holds exactly one LISTEN connection, named
 * `DOORBELL_APPLICATION_NAME` (src/outbox/doorbell.ts), for its whole life, so counting those counts relays, asleep or
 * draining. Sessions of other roles count only if this role may see them (see `oldestTransaction`).
 */
export async function relaysConnected(db: SqlExecutor): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`,
    [DOORBELL_APPLICATION_NAME],
  );
  return Number(rows[0]?.n ?? 0);
}
