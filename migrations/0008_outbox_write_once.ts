import { type Kysely, sql } from 'kysely';

/**
 * The write-once outbox (docs/outbox-storage.md has the design, the alternatives weighed and the measurements).
 *
 * An event row is inserted once and never updated or deleted. Relays keep their progress in cursors, one per lane,
 * and history is dropped a partition at a time with TRUNCATE. Tables:
 *
 * - `exactly_once_outbox_events`, LIST-partitioned on `part` into a ring of 8 partitions. `part` defaults to the
 *   partition the ring's pointer names (`exactly_once_outbox_meta.current_part`); maintenance moves the pointer on to
 *   an empty partition and truncates a partition whose events every lane has handled and that closed more than
 *   `cleanup_after` ago (0009's `exactly_once_outbox_rotate`). Columns of note:
 *   - `txid` (xid8), the producer transaction: relays read events between two snapshots (pgq's batches), so a
 *     transaction that commits late is never skipped and never delays the others.
 *   - `seq`, write order. Its sequence must stay CACHE 1: relays bound their reads by its last value (0009).
 *   - `lane`, a hash of the aggregate: 16 lanes, each with its own cursor. Relays divide lanes, never an aggregate.
 *   Indexes, each for one query: `(lane, seq)` the claim's walk in write order; `(lane, txid)` transactions that were
 *   still open at the last snapshot (stragglers); `id` per partition, the writer's duplicate check and look-ups.
 * - `exactly_once_outbox_lanes`: one row per lane, never updated: relays lock them `FOR UPDATE SKIP LOCKED`.
 * - `exactly_once_outbox_progress`: the lanes' cursors, append-only: a relay inserts one row per lane per batch it
 *   commits (an UPDATE would leave a dead version that a held snapshot keeps alive and every later read walks) and
 *   the relay truncates the table from time to time, keeping each lane's latest row.
 * - `exactly_once_outbox_parked`: the exceptions: an event whose push failed (retrying with backoff, or `failed`
 *   for good), and the later events of its aggregate, which wait behind it. A copy of the event, so the hot path never
 *   touches it and history can be truncated without it.
 * - `exactly_once_outbox_traffic`: events written per minute and destination, per relay (the dashboard's rates).
 * - `exactly_once_outbox` becomes a view with the old table's columns, status derived from the cursors: reads keep
 *   working, and an INSERT into it writes an event (plain-SQL producers), or, for imports, history or a parked event.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the app's schema type
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE exactly_once_outbox RENAME TO exactly_once_outbox_legacy`.execute(db);
  await sql`
    CREATE TABLE exactly_once_outbox_meta (
      singleton    boolean  PRIMARY KEY DEFAULT true CHECK (singleton),
      outbox_id    uuid     NOT NULL DEFAULT gen_random_uuid(),
      lanes        smallint NOT NULL,
      parts        smallint NOT NULL,
      current_part smallint NOT NULL
    )`.execute(db);
  await sql`INSERT INTO exactly_once_outbox_meta (lanes, parts, current_part) VALUES (16, 8, 0)`.execute(db);
  await sql`
    CREATE TABLE exactly_once_outbox_parts (
      part      smallint    PRIMARY KEY,
      opened_at timestamptz,
      closed_at timestamptz,
      sealed_at timestamptz
    )`.execute(db);
  await sql`INSERT INTO exactly_once_outbox_parts (part, opened_at)
            SELECT p, CASE WHEN p = 0 THEN now() END FROM generate_series(0, 7) p`.execute(db);
  await sql`
    CREATE FUNCTION exactly_once_outbox_part() RETURNS smallint LANGUAGE sql STABLE
    AS $$ SELECT current_part FROM exactly_once_outbox_meta $$`.execute(db);

  await sql`CREATE SEQUENCE exactly_once_outbox_events_seq CACHE 1`.execute(db);
  await sql`
    CREATE TABLE exactly_once_outbox_events (
      txid           xid8        NOT NULL DEFAULT pg_current_xact_id(),
      seq            bigint      NOT NULL DEFAULT nextval('exactly_once_outbox_events_seq'),
      part           smallint    NOT NULL DEFAULT exactly_once_outbox_part(),
      lane           smallint    NOT NULL
                                 GENERATED ALWAYS AS ((hashtext(aggregate_type || '/' || aggregate_id) & 15)::smallint) STORED,
      id             uuid        NOT NULL DEFAULT gen_random_uuid(),
      aggregate_type text        NOT NULL DEFAULT '',
      aggregate_id   text        NOT NULL,
      event_type     text        NOT NULL,
      payload        jsonb       NOT NULL,
      headers        jsonb       NOT NULL DEFAULT '{}'::jsonb,
      metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
      tenant_id      text        NOT NULL DEFAULT '',
      queue          text,
      max_retries    integer     CHECK (max_retries >= 0),
      created_at     timestamptz NOT NULL DEFAULT now()
    ) PARTITION BY LIST (part)`.execute(db);
  await sql`ALTER SEQUENCE exactly_once_outbox_events_seq OWNED BY exactly_once_outbox_events.seq`.execute(db);
  for (let p = 0; p < 8; p++) {
    await sql
      .raw(`CREATE TABLE exactly_once_outbox_events_${p} PARTITION OF exactly_once_outbox_events FOR VALUES IN (${p})`)
      .execute(db);
    await sql
      .raw(`CREATE UNIQUE INDEX exactly_once_outbox_events_${p}_id ON exactly_once_outbox_events_${p} (id)`)
      .execute(db);
  }
  await sql`CREATE INDEX exactly_once_outbox_events_lane_seq ON exactly_once_outbox_events (lane, seq)`.execute(db);
  await sql`CREATE INDEX exactly_once_outbox_events_lane_txid ON exactly_once_outbox_events (lane, txid)`.execute(db);

  await sql`CREATE TABLE exactly_once_outbox_lanes (lane smallint PRIMARY KEY)`.execute(db);
  await sql`INSERT INTO exactly_once_outbox_lanes SELECT generate_series(0, 15)`.execute(db);
  // Statistics for the claim's plans (generic ones, made once per session): without them the planner takes this
  // 16-row table for thousands of rows and every plan over it for expensive.
  await sql`ANALYZE exactly_once_outbox_lanes`.execute(db);

  // One row per lane per committed batch. The lane's cursor is its row with the highest b: it has handled every event
  // of the lane visible in done_snap, and of those visible in target_snap (the interval being read) the ones up to
  // seq pos. done_lo / target_lo: the sequence's last value read just before that snapshot was taken; target_hi: just
  // after. cutoff / side_hi: which parked events this lane's next batch may take (see 0009).
  await sql`
    CREATE TABLE exactly_once_outbox_progress (
      lane        smallint    NOT NULL,
      b           bigint      NOT NULL,
      k           bigint      NOT NULL,
      done_snap   pg_snapshot NOT NULL,
      done_lo     bigint      NOT NULL,
      target_snap pg_snapshot NOT NULL,
      target_lo   bigint      NOT NULL,
      target_hi   bigint      NOT NULL,
      pos         bigint,
      cutoff      timestamptz NOT NULL,
      side_hi     bigint      NOT NULL,
      handled     integer     NOT NULL DEFAULT 0,
      at          timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (lane, b)
    )`.execute(db);

  await sql`CREATE SEQUENCE exactly_once_outbox_parked_ord CACHE 1`.execute(db);
  await sql`
    CREATE TABLE exactly_once_outbox_parked (
      ord             bigint      PRIMARY KEY DEFAULT nextval('exactly_once_outbox_parked_ord'),
      id              uuid        NOT NULL,
      seq             bigint      NOT NULL UNIQUE,
      lane            smallint    NOT NULL,
      aggregate_type  text        NOT NULL,
      aggregate_id    text        NOT NULL,
      event_type      text        NOT NULL,
      payload         jsonb       NOT NULL,
      headers         jsonb       NOT NULL,
      metadata        jsonb       NOT NULL,
      tenant_id       text        NOT NULL,
      queue           text,
      max_retries     integer,
      created_at      timestamptz NOT NULL,
      status          text        NOT NULL CHECK (status IN ('pending', 'failed')),
      retry_count     integer     NOT NULL DEFAULT 0,
      next_attempt_at timestamptz NOT NULL DEFAULT '-infinity',
      last_error      text,
      parked_at       timestamptz NOT NULL DEFAULT now()
    )`.execute(db);
  await sql`ALTER SEQUENCE exactly_once_outbox_parked_ord OWNED BY exactly_once_outbox_parked.ord`.execute(db);
  // An aggregate's queue of parked events, in park order: the claim's "due?" and "blocked?" questions.
  await sql`CREATE INDEX exactly_once_outbox_parked_pending
              ON exactly_once_outbox_parked (lane, aggregate_type, aggregate_id, ord) WHERE status = 'pending'`.execute(
    db,
  );
  await sql`CREATE INDEX exactly_once_outbox_parked_id ON exactly_once_outbox_parked (id)`.execute(db);
  await sql`CREATE INDEX exactly_once_outbox_parked_failed ON exactly_once_outbox_parked (seq) WHERE status = 'failed'`.execute(
    db,
  );

  // Events written per minute and destination, by each relay process (the dashboard's rate chart, from every relay):
  // one row per relay, minute and destination, written once when the minute is over.
  await sql`
    CREATE TABLE exactly_once_outbox_traffic (
      minute    timestamptz NOT NULL,
      queue     text        NOT NULL,
      relay_id  text        NOT NULL,
      published integer     NOT NULL,
      PRIMARY KEY (minute, queue, relay_id)
    )`.execute(db);

  // Producers ring the relays' doorbell as before (0005's function), from the new table.
  await sql`
    CREATE TRIGGER exactly_once_outbox_notify AFTER INSERT ON exactly_once_outbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION exactly_once_outbox_notify()`.execute(db);

  await createView(db);
  await copyLegacy(db);
  await sql`DROP TABLE exactly_once_outbox_legacy`.execute(db);
}

/**
 * `exactly_once_outbox`, the old table's shape over the new storage, for operators' queries and plain-SQL producers.
 * A parked event shows as it is parked (pending or failed, with its retries and error); any other event is
 * `published` once its lane's cursor is past it, else `pending`. `published_at` is not recorded any more (that was
 * the per-event UPDATE this design removes), so it reads NULL. Deriving the status costs a join per row: the relay,
 * the admin API and the CLI query the tables themselves.
 */
// biome-ignore lint/suspicious/noExplicitAny: see up()
async function createView(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE VIEW exactly_once_outbox AS
      WITH cursor AS (
        SELECT DISTINCT ON (lane) lane, done_snap, target_snap, pos
          FROM exactly_once_outbox_progress
         ORDER BY lane, b DESC
      )
      SELECT p.id, p.seq, p.aggregate_type, p.aggregate_id, p.event_type, p.payload, p.headers, p.metadata,
             p.tenant_id, p.queue, p.status, p.retry_count, p.max_retries,
             GREATEST(p.next_attempt_at, p.created_at) AS next_attempt_at, p.last_error,
             p.created_at, NULL::timestamptz AS published_at
        FROM exactly_once_outbox_parked p
      UNION ALL
      SELECT e.id, e.seq, e.aggregate_type, e.aggregate_id, e.event_type, e.payload, e.headers, e.metadata,
             e.tenant_id, e.queue,
             CASE WHEN pg_visible_in_snapshot(e.txid, c.done_snap)
                    OR (c.pos IS NOT NULL AND e.seq <= c.pos AND pg_visible_in_snapshot(e.txid, c.target_snap))
                  THEN 'published' ELSE 'pending' END,
             0, e.max_retries, e.created_at, NULL::text, e.created_at, NULL::timestamptz
        FROM exactly_once_outbox_events e
        JOIN cursor c ON c.lane = e.lane
       WHERE NOT EXISTS (SELECT 1 FROM exactly_once_outbox_parked p WHERE p.seq = e.seq)`.execute(db);
  await sql`
    CREATE FUNCTION exactly_once_outbox_view_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    -- A row inserted into the view lands where an event in that state lives: pending, an event no relay has read;
    -- published, history every relay has passed (transaction id 3, older than every snapshot); failed, or pending
    -- with retries behind it, a parked event. (Plain-SQL producers insert pending events; the rest is for imports.)
    BEGIN
      IF COALESCE(NEW.status, 'pending') NOT IN ('pending', 'published', 'failed') THEN
        RAISE EXCEPTION 'exactly_once_outbox: status must be pending, published or failed (got %)', NEW.status
          USING ERRCODE = 'check_violation';
      END IF;
      IF NEW.status = 'failed' OR COALESCE(NEW.retry_count, 0) > 0 THEN
        INSERT INTO exactly_once_outbox_parked
          (id, seq, lane, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue,
           max_retries, created_at, status, retry_count, next_attempt_at, last_error)
        VALUES (COALESCE(NEW.id, gen_random_uuid()), nextval('exactly_once_outbox_events_seq'),
                (hashtext(COALESCE(NEW.aggregate_type, '') || '/' || NEW.aggregate_id) & 15)::smallint,
                COALESCE(NEW.aggregate_type, ''), NEW.aggregate_id, NEW.event_type, NEW.payload,
                COALESCE(NEW.headers, '{}'), COALESCE(NEW.metadata, '{}'), COALESCE(NEW.tenant_id, ''), NEW.queue,
                NEW.max_retries, COALESCE(NEW.created_at, now()), COALESCE(NEW.status, 'pending'),
                COALESCE(NEW.retry_count, 0), COALESCE(NEW.next_attempt_at, now()), NEW.last_error)
        RETURNING id, seq, created_at INTO NEW.id, NEW.seq, NEW.created_at;
      ELSE
        INSERT INTO exactly_once_outbox_events
          (txid, id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue,
           max_retries, created_at)
        VALUES (CASE WHEN NEW.status = 'published' THEN '3'::xid8 ELSE pg_current_xact_id() END,
                COALESCE(NEW.id, gen_random_uuid()), COALESCE(NEW.aggregate_type, ''), NEW.aggregate_id,
                NEW.event_type, NEW.payload, COALESCE(NEW.headers, '{}'), COALESCE(NEW.metadata, '{}'),
                COALESCE(NEW.tenant_id, ''), NEW.queue, NEW.max_retries, COALESCE(NEW.created_at, now()))
        RETURNING id, seq, created_at INTO NEW.id, NEW.seq, NEW.created_at;
      END IF;
      NEW.status := COALESCE(NEW.status, 'pending');
      NEW.retry_count := COALESCE(NEW.retry_count, 0);
      NEW.next_attempt_at := COALESCE(NEW.next_attempt_at, NEW.created_at);
      RETURN NEW;
    END
    $$`.execute(db);
  await sql`
    CREATE TRIGGER exactly_once_outbox_insert INSTEAD OF INSERT ON exactly_once_outbox
    FOR EACH ROW EXECUTE FUNCTION exactly_once_outbox_view_insert()`.execute(db);
}

/**
 * Bring the old table's rows over, losing none: published history keeps its seq and counts as handled (transaction id
 * 3, older than every snapshot); failed events are parked as failed; an aggregate with an event waiting for a retry is
 * parked whole, from its first pending event on, in write order, so nothing overtakes it; every other pending event
 * is written again in this transaction (new seqs, after every old one, in the old order) and is read by the first
 * interval after the upgrade. Each lane starts with a cursor that has handled everything older than this transaction.
 */
// biome-ignore lint/suspicious/noExplicitAny: see up()
async function copyLegacy(db: Kysely<any>): Promise<void> {
  await sql`SELECT setval('exactly_once_outbox_events_seq', GREATEST((SELECT max(seq) FROM exactly_once_outbox_legacy), 0) + 1, false)`.execute(
    db,
  );
  await sql`
    INSERT INTO exactly_once_outbox_events
      (txid, seq, part, id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue,
       max_retries, created_at)
    SELECT '3'::xid8, seq, 0, id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id,
           queue, max_retries, created_at
      FROM exactly_once_outbox_legacy WHERE status = 'published' ORDER BY seq`.execute(db);
  await sql`
    WITH blocked AS (
      SELECT aggregate_type, aggregate_id, min(seq) AS first_pending
        FROM exactly_once_outbox_legacy
       WHERE status = 'pending'
       GROUP BY 1, 2
      HAVING bool_or(retry_count > 0)
    )
    INSERT INTO exactly_once_outbox_parked
      (ord, id, seq, lane, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue,
       max_retries, created_at, status, retry_count, next_attempt_at, last_error)
    SELECT nextval('exactly_once_outbox_parked_ord'), l.id, l.seq,
           (hashtext(l.aggregate_type || '/' || l.aggregate_id) & 15)::smallint, l.aggregate_type, l.aggregate_id,
           l.event_type, l.payload, l.headers, l.metadata, l.tenant_id, l.queue, l.max_retries, l.created_at,
           l.status, l.retry_count,
           CASE WHEN l.status = 'pending' AND l.seq = b.first_pending AND l.retry_count > 0 THEN l.next_attempt_at
                ELSE '-infinity' END,
           l.last_error
      FROM exactly_once_outbox_legacy l
      LEFT JOIN blocked b USING (aggregate_type, aggregate_id)
     WHERE l.status = 'failed' OR (l.status = 'pending' AND b.aggregate_id IS NOT NULL)
     ORDER BY l.seq`.execute(db);
  await sql`
    INSERT INTO exactly_once_outbox_events
      (id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue, max_retries,
       created_at)
    SELECT id, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue, max_retries,
           created_at
      FROM exactly_once_outbox_legacy l
     WHERE status = 'pending'
       AND NOT EXISTS (SELECT 1 FROM exactly_once_outbox_parked p WHERE p.id = l.id)
     ORDER BY seq`.execute(db);
  // The first cursor of every lane: what committed before the oldest transaction still open now is handled. Not
  // handled: the events written above (this transaction's), and those of transactions open now, which may write
  // events once this commits (an app transaction that began before the migration). A snapshot of this moment would not
  // do: its xmax is one past the latest transaction that ended, so a transaction that began just before this one and
  // is still open would read as committed. The first walk starts below the lane's first re-written event.
  await sql`
    INSERT INTO exactly_once_outbox_progress
      (lane, b, k, done_snap, done_lo, target_snap, target_lo, target_hi, pos, cutoff, side_hi)
    SELECT l.lane, 0, 0, s.snap, lo.v, s.snap, lo.v, lo.v, NULL, now(),
           (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM exactly_once_outbox_parked_ord)
      FROM exactly_once_outbox_lanes l
     CROSS JOIN (SELECT (x || ':' || x || ':')::pg_snapshot AS snap
                   FROM (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x) t) s
     CROSS JOIN LATERAL (
       SELECT COALESCE((SELECT min(e.seq) - 1 FROM exactly_once_outbox_events e
                         WHERE e.lane = l.lane AND e.txid = pg_current_xact_id()),
                       (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
                          FROM exactly_once_outbox_events_seq)) AS v
     ) lo`.execute(db);
}

/** Back to 0007's table, with every event in it: handled ones published, parked ones as they are, the rest pending. */
// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE exactly_once_outbox_legacy (
      id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
      seq             bigint      GENERATED ALWAYS AS IDENTITY,
      aggregate_type  text        NOT NULL DEFAULT '',
      aggregate_id    text        NOT NULL,
      event_type      text        NOT NULL,
      payload         jsonb       NOT NULL,
      headers         jsonb       NOT NULL DEFAULT '{}'::jsonb,
      metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
      tenant_id       text        NOT NULL DEFAULT '',
      queue           text,
      status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'published', 'failed')),
      retry_count     integer     NOT NULL DEFAULT 0,
      max_retries     integer     CHECK (max_retries >= 0),
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      last_error      text,
      created_at      timestamptz NOT NULL DEFAULT now(),
      published_at    timestamptz
    )`.execute(db);
  await sql`
    INSERT INTO exactly_once_outbox_legacy
      (id, seq, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue, status,
       retry_count, max_retries, next_attempt_at, last_error, created_at, published_at)
    OVERRIDING SYSTEM VALUE
    SELECT id, seq, aggregate_type, aggregate_id, event_type, payload, headers, metadata, tenant_id, queue, status,
           retry_count, max_retries, next_attempt_at, last_error, created_at,
           CASE WHEN status = 'published' THEN now() END
      FROM exactly_once_outbox`.execute(db);
  await sql`SELECT setval(pg_get_serial_sequence('exactly_once_outbox_legacy', 'seq'),
                          GREATEST((SELECT max(seq) FROM exactly_once_outbox_legacy), 1))`.execute(db);
  await sql`DROP VIEW exactly_once_outbox`.execute(db);
  await sql`DROP FUNCTION exactly_once_outbox_view_insert()`.execute(db);
  await sql`DROP TABLE exactly_once_outbox_events, exactly_once_outbox_lanes, exactly_once_outbox_progress,
                       exactly_once_outbox_parked, exactly_once_outbox_parts, exactly_once_outbox_meta,
                       exactly_once_outbox_traffic`.execute(db);
  await sql`DROP FUNCTION exactly_once_outbox_part()`.execute(db);
  await sql`ALTER TABLE exactly_once_outbox_legacy RENAME TO exactly_once_outbox`.execute(db);
  await sql`ALTER TABLE exactly_once_outbox RENAME CONSTRAINT exactly_once_outbox_legacy_pkey TO exactly_once_outbox_pkey`.execute(
    db,
  );
  await sql`ALTER TABLE exactly_once_outbox RENAME CONSTRAINT exactly_once_outbox_legacy_status_check
              TO exactly_once_outbox_status_check`.execute(db);
  await sql`ALTER TABLE exactly_once_outbox RENAME CONSTRAINT exactly_once_outbox_legacy_max_retries_check
              TO exactly_once_outbox_max_retries_check`.execute(db);
  await sql`ALTER SEQUENCE exactly_once_outbox_legacy_seq_seq RENAME TO exactly_once_outbox_seq_seq`.execute(db);
  await sql`CREATE UNIQUE INDEX exactly_once_outbox_seq ON exactly_once_outbox (seq)`.execute(db);
  await sql`CREATE INDEX exactly_once_outbox_pending ON exactly_once_outbox (seq) WHERE status = 'pending'`.execute(db);
  await sql`CREATE INDEX exactly_once_outbox_pending_aggregate
              ON exactly_once_outbox (aggregate_type, aggregate_id, seq) WHERE status = 'pending'`.execute(db);
  await sql`CREATE INDEX exactly_once_outbox_failed ON exactly_once_outbox (seq) WHERE status = 'failed'`.execute(db);
  await sql`CREATE INDEX exactly_once_outbox_retrying
              ON exactly_once_outbox (aggregate_type, aggregate_id, seq)
              WHERE status = 'pending' AND retry_count > 0`.execute(db);
  await sql`CREATE INDEX exactly_once_outbox_published_brin
              ON exactly_once_outbox USING brin (published_at timestamptz_minmax_multi_ops)`.execute(db);
  await sql`
    CREATE TRIGGER exactly_once_outbox_notify AFTER INSERT ON exactly_once_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION exactly_once_outbox_notify()`.execute(db);
}
