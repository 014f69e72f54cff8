import { type Kysely, sql } from 'kysely';

/**
 * The relay's cursor functions over 0008's tables (src/outbox/postgres/ runs them; docs/outbox-storage.md has the
 * design). Server-side because a claim visits lanes one by one until its batch is full, locking only the lanes it
 * reads, and each step needs a snapshot taken after the previous one: one round trip instead of one per lane.
 *
 * How a lane is read. Its cursor (latest `exactly_once_outbox_progress` row) names two snapshots: `done` (every event
 * of the lane visible in it is handled) and `target`; the interval between them is read in write order (`seq`) up to
 * `pos`. An event belongs to the interval when its transaction is visible in `target` and not in `done`, so a
 * producer transaction that stays open is neither skipped (it is invisible in `done`, found in a later interval) nor
 * waited for (the others are visible without it). In write order, such a late transaction's events can sit below
 * everything else of the interval: they are the stragglers, found by transaction id (those still open at `done`,
 * its xip list, or started after it: ids from `done`'s xmax up to `target`'s) with `seq <= done_lo`; the rest is a
 * walk of `(lane, seq)` from `done_lo` to `target_hi`. Why nothing falls between the two: `done_lo` was read before
 * `done` was taken, so an event with `seq <= done_lo` was written before `done`; if its transaction had not committed
 * by then, its id is in `done`'s xip list or at or above its xmax (a snapshot's xmax is one past the latest transaction
 * that had ended, not the next id to be assigned). `target_hi` was read after `target` was taken: every event visible
 * in `target` has `seq <= target_hi`.
 *
 * Intervals are fixed before anything in them is pushed: a claim reads only an interval a committed cursor names,
 * and the commit that finishes an interval names the next one (`exactly_once_outbox_advance`); a lane whose interval
 * is used up names the next one in the claim (an `R` row) and is read by the next claim. So a batch re-run after a
 * crash reads the same events in the same order, which is what lets the Redis side keep one high-water mark per lane
 * and destination instead of a marker per event (src/publishers/lua/publish-jobs.lua).
 *
 * Parked events (retries, and the events waiting behind them) are read before the lane's interval: per aggregate
 * whose head is due at the cursor's `cutoff`, the head alone when it failed before (its followers would only be held
 * behind it again), else its queue, in park order (`ord`), at most 200 per lane and batch and never more than half
 * the batch, among the rows parked by the time the cursor was written (`ord <= side_hi`: a replay made since waits for
 * the next batch). The cap is a constant and the set depends only on committed state, so a re-run sees the same
 * parked events. An interval event of an aggregate with parked events the batch does not take is returned as `p` (to
 * be parked behind them, not pushed).
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the app's schema type
export async function up(db: Kysely<any>): Promise<void> {
  // The sequence's last value read before, the snapshot, the last value read after (statements run in this order,
  // each in a snapshot of its own), and the parked-ord sequence's last value.
  await sql`
    CREATE FUNCTION exactly_once_outbox_fresh(OUT snap pg_snapshot, OUT lo bigint, OUT hi bigint, OUT side_hi bigint)
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
      SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO lo FROM exactly_once_outbox_events_seq;
      SELECT s INTO snap FROM (SELECT pg_current_snapshot() AS s) x;
      SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO hi FROM exactly_once_outbox_events_seq;
      SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO side_hi
        FROM exactly_once_outbox_parked_ord;
    END
    $$`.execute(db);

  // Rows: per lane read, its parked events due ('s'), its interval events ('c' to push, 'p' to park), then one 'L'
  // row (batch = the cursor's b + 1, interval_no = k, exhausted = the interval is used up by this batch, cursor_pos);
  // an 'R' row for a lane whose next interval was named now (commit, then claim again).
  //
  // Cost when there is little to do (most calls of a relay that keeps up): one statement surveys every lane's cursor
  // for anything it could read (parked events, events beyond its position, late transactions), and only those lanes
  // are locked and read. Event queries name the live partitions only (the current one and those closed but not yet
  // sealed, see exactly_once_outbox_rotate): a partition's index is a probe each, and history is not. Measured with
  // 15 of 16 lanes empty: 21 ms per call before (every lane read, custom plans over all eight partitions), ~0.5 ms.
  await sql`
    CREATE FUNCTION exactly_once_outbox_claim(p_batch integer, p_first integer)
    RETURNS TABLE (
      lane smallint, kind text, batch bigint, interval_no bigint, exhausted boolean, cursor_pos bigint,
      seq bigint, id uuid, aggregate_type text, aggregate_id text, event_type text, tenant_id text, queue text,
      retry_count integer, max_retries integer, created_at timestamptz, payload text, headers text,
      priority text, traceparent text, filepath text, filesize text)
    -- Generic plans: a custom plan per call re-plans every statement over the partitions, which cost more than running
    -- them. Partitions are pruned at run time from v_p (an array of eight parameters, which the executor can prune on).
    -- No JIT: the generic plans' estimates are high enough to compile them, which costs far more than running them.
    LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan SET jit = off AS $$
    #variable_conflict use_column
    DECLARE
      v_budget integer := p_batch;
      v_lanes integer;
      v_lane smallint;
      v_todo smallint[];
      v_p smallint[];
      st exactly_once_outbox_progress%ROWTYPE;
      v_side integer;
      v_chunk integer;
      v_limit integer;
      v_side_ords bigint[];
      f record;
      v_have_f boolean := false;
    BEGIN
      SELECT m.lanes INTO v_lanes FROM exactly_once_outbox_meta m;
      SELECT COALESCE(array_agg(x.part ORDER BY x.part), '{}') INTO v_p
        FROM exactly_once_outbox_parts x WHERE x.opened_at IS NOT NULL AND x.sealed_at IS NULL;
      -- Lanes with something to read, from p_first on. Read without their locks: a cursor another relay is about to
      -- move on is older, so it shows more to do, never less; each lane found here is locked and read again below.
      SELECT COALESCE(array_agg(c.lane ORDER BY (c.lane - p_first % v_lanes + v_lanes) % v_lanes), '{}') INTO v_todo
        FROM exactly_once_outbox_lanes l
        CROSS JOIN LATERAL (SELECT * FROM exactly_once_outbox_progress x
                             WHERE x.lane = l.lane ORDER BY x.b DESC LIMIT 1) c
       -- Cheapest and likeliest first (OR stops at the first true); each probe is one index descent: ORDER BY ...
       -- LIMIT 1 keeps the planner on the index (a bitmap scan would collect a whole backlog to answer "any?").
       WHERE (SELECT e.seq FROM exactly_once_outbox_events e
               WHERE e.part = ANY (ARRAY[v_p[1], v_p[2], v_p[3], v_p[4], v_p[5], v_p[6], v_p[7], v_p[8]]) AND e.lane = c.lane
                 AND e.seq > GREATEST(COALESCE(c.pos, -1), c.done_lo)
                 AND NOT pg_visible_in_snapshot(e.txid, c.done_snap)
               ORDER BY e.seq LIMIT 1) IS NOT NULL
          OR EXISTS (SELECT 1 FROM exactly_once_outbox_parked q WHERE q.lane = c.lane AND q.status = 'pending')
          -- late transactions: open when done was taken, or begun since, and not handled
          OR EXISTS (SELECT 1 FROM pg_snapshot_xip(c.done_snap) x(xid)
                       JOIN exactly_once_outbox_events e ON e.txid = x.xid
                      WHERE e.part = ANY (ARRAY[v_p[1], v_p[2], v_p[3], v_p[4], v_p[5], v_p[6], v_p[7], v_p[8]]) AND e.lane = c.lane
                        AND NOT (pg_visible_in_snapshot(e.txid, c.target_snap) AND e.seq <= COALESCE(c.pos, -1)))
          OR (SELECT e.txid FROM exactly_once_outbox_events e
               WHERE e.part = ANY (ARRAY[v_p[1], v_p[2], v_p[3], v_p[4], v_p[5], v_p[6], v_p[7], v_p[8]]) AND e.lane = c.lane AND e.txid >= pg_snapshot_xmax(c.done_snap)
                 AND NOT (pg_visible_in_snapshot(e.txid, c.target_snap) AND e.seq <= COALESCE(c.pos, -1))
               ORDER BY e.txid LIMIT 1) IS NOT NULL;

      FOREACH v_lane IN ARRAY v_todo LOOP
        EXIT WHEN v_budget <= 0;
        PERFORM 1 FROM exactly_once_outbox_lanes l WHERE l.lane = v_lane FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        -- A statement of its own, so its snapshot sees the cursor the lane's previous holder committed.
        SELECT * INTO st FROM exactly_once_outbox_progress p WHERE p.lane = v_lane ORDER BY p.b DESC LIMIT 1;

        -- Parked events to take (see the header): heads due, with their queues when they never failed; in park order,
        -- at most 200 (a constant, so a re-run of the batch takes the same ones).
        SELECT array_agg(x.ord ORDER BY x.ord) INTO v_side_ords FROM (
          SELECT q.ord
            FROM exactly_once_outbox_parked q
            JOIN (SELECT DISTINCT ON (p.aggregate_type, p.aggregate_id) p.aggregate_type, p.aggregate_id,
                         p.ord AS head_ord, p.retry_count AS head_retries, p.next_attempt_at
                    FROM exactly_once_outbox_parked p
                   WHERE p.lane = v_lane AND p.status = 'pending' AND p.ord <= st.side_hi
                   ORDER BY p.aggregate_type, p.aggregate_id, p.ord) h
              ON h.aggregate_type = q.aggregate_type AND h.aggregate_id = q.aggregate_id
           WHERE q.lane = v_lane AND q.status = 'pending' AND q.ord <= st.side_hi
             AND h.next_attempt_at <= st.cutoff AND (h.head_retries = 0 OR q.ord = h.head_ord)
           ORDER BY q.ord
           LIMIT 200) x;
        v_side_ords := COALESCE(v_side_ords, '{}');
        v_side := 0;
        IF cardinality(v_side_ords) > 0 THEN
          RETURN QUERY
            SELECT v_lane, 's'::text, st.b + 1, st.k, NULL::boolean, NULL::bigint, q.seq, q.id, q.aggregate_type,
                   q.aggregate_id, q.event_type, q.tenant_id, q.queue, q.retry_count, q.max_retries, q.created_at,
                   q.payload::text, q.headers::text, q.headers->>'priority', q.headers->>'traceparent',
                   CASE WHEN jsonb_typeof(q.payload->'filepath') = 'string' THEN q.payload->>'filepath' END,
                   CASE WHEN jsonb_typeof(q.payload->'filesize') = 'number' THEN q.payload->>'filesize' END
              FROM exactly_once_outbox_parked q
             WHERE q.ord = ANY (v_side_ords)
             ORDER BY q.ord;
          GET DIAGNOSTICS v_side = ROW_COUNT;
        END IF;

        -- Parked events never take more than half the batch from the lane's new events. One row more than the limit
        -- is read to know whether this batch uses the interval up (then the commit names the next one). The lane's
        -- 'L' row comes last, in the same statement.
        v_limit := GREATEST(v_budget - v_side, (v_budget + 1) / 2);
        v_chunk := 0;
        IF v_limit > 0 THEN
          RETURN QUERY
            WITH blocked AS MATERIALIZED (
              -- Aggregates with parked events this batch does not take: their new events are parked behind them.
              SELECT DISTINCT p.aggregate_type, p.aggregate_id
                FROM exactly_once_outbox_parked p
               WHERE p.lane = v_lane AND p.status = 'pending' AND p.ord <= st.side_hi
                 AND p.ord <> ALL (v_side_ords)
            ), taken AS MATERIALIZED (
              SELECT u.*, row_number() OVER (ORDER BY u.seq) AS rn FROM (
                SELECT * FROM (
                  (SELECT e.* FROM pg_snapshot_xip(st.done_snap) x(xid)
                     JOIN exactly_once_outbox_events e ON e.txid = x.xid
                    WHERE e.part = ANY (ARRAY[v_p[1], v_p[2], v_p[3], v_p[4], v_p[5], v_p[6], v_p[7], v_p[8]]) AND e.lane = v_lane AND COALESCE(st.pos, -1) < st.done_lo
                      AND e.seq <= st.done_lo AND e.seq > COALESCE(st.pos, -1)
                      AND pg_visible_in_snapshot(e.txid, st.target_snap)
                    ORDER BY e.seq LIMIT v_limit + 1)
                  UNION ALL
                  (SELECT e.* FROM exactly_once_outbox_events e
                    WHERE e.part = ANY (ARRAY[v_p[1], v_p[2], v_p[3], v_p[4], v_p[5], v_p[6], v_p[7], v_p[8]]) AND e.lane = v_lane AND COALESCE(st.pos, -1) < st.done_lo
                      AND e.txid >= pg_snapshot_xmax(st.done_snap) AND e.txid < pg_snapshot_xmax(st.target_snap)
                      AND e.seq <= st.done_lo AND e.seq > COALESCE(st.pos, -1)
                      AND pg_visible_in_snapshot(e.txid, st.target_snap)
                    ORDER BY e.seq LIMIT v_limit + 1)
                  UNION ALL
                  (SELECT e.* FROM exactly_once_outbox_events e
                    WHERE e.part = ANY (ARRAY[v_p[1], v_p[2], v_p[3], v_p[4], v_p[5], v_p[6], v_p[7], v_p[8]]) AND e.lane = v_lane AND e.seq > GREATEST(COALESCE(st.pos, -1), st.done_lo)
                      AND e.seq <= st.target_hi
                      AND NOT pg_visible_in_snapshot(e.txid, st.done_snap)
                      AND pg_visible_in_snapshot(e.txid, st.target_snap)
                    ORDER BY e.seq LIMIT v_limit + 1)
                ) w ORDER BY w.seq LIMIT v_limit + 1
              ) u
            )
            SELECT v_lane, CASE WHEN b.aggregate_id IS NULL THEN 'c' ELSE 'p' END, st.b + 1, st.k, NULL::boolean,
                   NULL::bigint, t.seq, t.id, t.aggregate_type, t.aggregate_id, t.event_type, t.tenant_id, t.queue,
                   0, t.max_retries, t.created_at, t.payload::text, t.headers::text, t.headers->>'priority',
                   t.headers->>'traceparent',
                   CASE WHEN jsonb_typeof(t.payload->'filepath') = 'string' THEN t.payload->>'filepath' END,
                   CASE WHEN jsonb_typeof(t.payload->'filesize') = 'number' THEN t.payload->>'filesize' END
              FROM taken t
              LEFT JOIN blocked b ON b.aggregate_type = t.aggregate_type AND b.aggregate_id = t.aggregate_id
             WHERE t.rn <= v_limit
            UNION ALL
            SELECT v_lane, 'L'::text, st.b + 1, st.k, (SELECT count(*) FROM taken) <= v_limit, st.pos, NULL::bigint,
                   NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::integer,
                   NULL::integer, NULL::timestamptz, NULL::text, NULL::text, NULL::text, NULL::text,
                   NULL::text, NULL::text
             WHERE v_side > 0 OR EXISTS (SELECT 1 FROM taken)
            ORDER BY 7 NULLS LAST;
          GET DIAGNOSTICS v_chunk = ROW_COUNT;
          v_chunk := GREATEST(v_chunk - 1, 0);
        ELSIF v_side > 0 THEN
          RETURN QUERY SELECT v_lane, 'L'::text, st.b + 1, st.k, false, st.pos, NULL::bigint,
                              NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::integer,
                              NULL::integer, NULL::timestamptz, NULL::text, NULL::text, NULL::text, NULL::text,
                              NULL::text, NULL::text;
        END IF;

        IF v_side + v_chunk > 0 THEN
          v_budget := v_budget - v_side - v_chunk;
          CONTINUE;
        END IF;

        -- Nothing to do under this cursor. If the lane has new events, or parked ones due by now, name its next
        -- interval (and the new cutoff) now; they are read once this is committed. One fresh snapshot serves every
        -- such lane of this call as long as it sees all that the lane's target saw (everything below the target's
        -- xmax had ended when it was taken); a lane whose cursor another relay wrote since gets a newer one.
        IF v_have_f THEN
          v_have_f := pg_snapshot_xmax(st.target_snap) <= pg_snapshot_xmin(f.snap);
        END IF;
        IF NOT v_have_f THEN
          SELECT * INTO f FROM exactly_once_outbox_fresh();
          v_have_f := true;
        END IF;
        IF (SELECT e.seq FROM exactly_once_outbox_events e
             WHERE e.part = ANY (ARRAY[v_p[1], v_p[2], v_p[3], v_p[4], v_p[5], v_p[6], v_p[7], v_p[8]]) AND e.lane = v_lane AND e.seq > st.target_lo AND e.seq <= f.hi
               AND NOT pg_visible_in_snapshot(e.txid, st.target_snap)
               AND pg_visible_in_snapshot(e.txid, f.snap)
             ORDER BY e.seq LIMIT 1) IS NOT NULL
           OR EXISTS (SELECT 1 FROM pg_snapshot_xip(st.target_snap) x(xid)
                        JOIN exactly_once_outbox_events e ON e.txid = x.xid
                       WHERE e.part = ANY (ARRAY[v_p[1], v_p[2], v_p[3], v_p[4], v_p[5], v_p[6], v_p[7], v_p[8]]) AND e.lane = v_lane AND e.seq <= st.target_lo
                         AND pg_visible_in_snapshot(e.txid, f.snap))
           OR (SELECT e.txid FROM exactly_once_outbox_events e
                WHERE e.part = ANY (ARRAY[v_p[1], v_p[2], v_p[3], v_p[4], v_p[5], v_p[6], v_p[7], v_p[8]]) AND e.lane = v_lane AND e.txid >= pg_snapshot_xmax(st.target_snap)
                  AND e.txid < pg_snapshot_xmax(f.snap) AND e.seq <= st.target_lo
                  AND pg_visible_in_snapshot(e.txid, f.snap)
                ORDER BY e.txid LIMIT 1) IS NOT NULL
           OR EXISTS (SELECT 1 FROM (
                        SELECT DISTINCT ON (p.aggregate_type, p.aggregate_id) p.next_attempt_at
                          FROM exactly_once_outbox_parked p
                         WHERE p.lane = v_lane AND p.status = 'pending' AND p.ord <= f.side_hi
                         ORDER BY p.aggregate_type, p.aggregate_id, p.ord) h
                       WHERE h.next_attempt_at <= now()) THEN
          INSERT INTO exactly_once_outbox_progress
            (lane, b, k, done_snap, done_lo, target_snap, target_lo, target_hi, pos, cutoff, side_hi)
          VALUES (v_lane, st.b + 1, st.k + 1, st.target_snap, st.target_lo, f.snap, f.lo, f.hi, NULL, now(),
                  f.side_hi);
          RETURN QUERY SELECT v_lane, 'R'::text, st.b + 1, st.k + 1, NULL::boolean, NULL::bigint, NULL::bigint,
                              NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::integer,
                              NULL::integer, NULL::timestamptz, NULL::text, NULL::text, NULL::text, NULL::text,
                              NULL::text, NULL::text;
        END IF;
      END LOOP;
    END
    $$`.execute(db);

  // The commit of a batch: one new cursor row per lane it read. A lane whose interval the batch used up starts the
  // next interval at a snapshot taken now; any other lane moves its position to the last seq it took (or keeps it,
  // when the batch took only parked events). cutoff and side_hi are read now, after the batch's parked rows were
  // written, so the next batch sees them.
  await sql`
    CREATE FUNCTION exactly_once_outbox_advance(p_lanes smallint[], p_pos bigint[], p_exhausted boolean[])
    RETURNS void LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
      f record;
    BEGIN
      SELECT * INTO f FROM exactly_once_outbox_fresh();
      INSERT INTO exactly_once_outbox_progress
        (lane, b, k, done_snap, done_lo, target_snap, target_lo, target_hi, pos, cutoff, side_hi)
      SELECT c.lane, c.b + 1,
             CASE WHEN a.exhausted THEN c.k + 1 ELSE c.k END,
             CASE WHEN a.exhausted THEN c.target_snap ELSE c.done_snap END,
             CASE WHEN a.exhausted THEN c.target_lo ELSE c.done_lo END,
             CASE WHEN a.exhausted THEN f.snap ELSE c.target_snap END,
             CASE WHEN a.exhausted THEN f.lo ELSE c.target_lo END,
             CASE WHEN a.exhausted THEN f.hi ELSE c.target_hi END,
             CASE WHEN a.exhausted THEN NULL ELSE COALESCE(a.pos, c.pos) END,
             now(), f.side_hi
        FROM unnest(p_lanes, p_pos, p_exhausted) AS a(lane, pos, exhausted)
        CROSS JOIN LATERAL (SELECT * FROM exactly_once_outbox_progress x
                             WHERE x.lane = a.lane ORDER BY x.b DESC LIMIT 1) c;
    END
    $$`.execute(db);

  // Keep only each lane's latest cursor row. Takes every lane (waiting, up to the lock timeout the caller set), so no
  // claim is between reading and writing a cursor; TRUNCATE frees the space at once and leaves no dead rows behind.
  await sql`
    CREATE FUNCTION exactly_once_outbox_compact_progress() RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
      v_keep exactly_once_outbox_progress[];
      v_before integer;
    BEGIN
      PERFORM 1 FROM exactly_once_outbox_lanes ORDER BY lane FOR UPDATE;
      SELECT count(*) INTO v_before FROM exactly_once_outbox_progress;
      SELECT array_agg(c) INTO v_keep
        FROM (SELECT DISTINCT ON (p.lane) p.* FROM exactly_once_outbox_progress p ORDER BY p.lane, p.b DESC) c;
      TRUNCATE exactly_once_outbox_progress;
      INSERT INTO exactly_once_outbox_progress SELECT * FROM unnest(v_keep);
      RETURN v_before - COALESCE(array_length(v_keep, 1), 0);
    END
    $$`.execute(db);

  // Retention: move the ring's pointer on when the current partition is at least p_period_ms old and the next one is
  // empty; seal each closed partition whose events every lane has handled; truncate each sealed partition that closed
  // more than p_keep_ms ago. One partition at a time, each in a subtransaction under p_lock_timeout_ms: a partition
  // some session still holds a lock on (a producer transaction that wrote into it is still open) is left for the next
  // run. `dropped` counts the rows truncated (exact for partitions up to 1,000,000 rows by the planner's estimate,
  // estimated beyond: counting them would take longer than dropping them).
  //
  // Sealing is what lets claims leave history out (they read the partitions opened and not sealed): under an ACCESS
  // EXCLUSIVE lock (so no producer is writing into it), once it closed a minute ago or more, a partition whose events
  // every lane's cursor has passed gets CHECK (false) NOT VALID. An insert that would still land there (a statement
  // that read the ring's pointer before it moved and routes its first row after all that) fails instead of writing an
  // event no claim would read. Truncation drops the constraint with the rows.
  await sql`
    CREATE FUNCTION exactly_once_outbox_rotate(p_period_ms bigint, p_keep_ms bigint, p_lock_timeout_ms integer,
                                               OUT truncated smallint[], OUT dropped bigint, OUT rotated boolean)
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
      r record;
      v_rel regclass;
      v_est real;
      v_rows bigint;
      v_parts integer;
      v_cur smallint;
      v_next smallint;
    BEGIN
      truncated := '{}';
      dropped := 0;
      rotated := false;
      PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
      SELECT m.parts, m.current_part INTO v_parts, v_cur FROM exactly_once_outbox_meta m FOR UPDATE;
      v_next := ((v_cur + 1) % v_parts)::smallint;
      IF EXISTS (SELECT 1 FROM exactly_once_outbox_parts
                  WHERE part = v_cur AND opened_at <= now() - make_interval(secs => p_period_ms / 1000.0))
         AND EXISTS (SELECT 1 FROM exactly_once_outbox_parts WHERE part = v_next AND opened_at IS NULL) THEN
        UPDATE exactly_once_outbox_meta SET current_part = v_next;
        UPDATE exactly_once_outbox_parts SET closed_at = now() WHERE part = v_cur;
        UPDATE exactly_once_outbox_parts SET opened_at = now() WHERE part = v_next;
        rotated := true;
      END IF;

      FOR r IN SELECT part FROM exactly_once_outbox_parts
                WHERE closed_at IS NOT NULL AND sealed_at IS NULL AND closed_at <= now() - interval '1 minute'
                ORDER BY closed_at LOOP
        v_rel := format('exactly_once_outbox_events_%s', r.part)::regclass;
        BEGIN
          EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_rel);
          CONTINUE WHEN EXISTS (
            SELECT 1 FROM exactly_once_outbox_lanes l
            CROSS JOIN LATERAL (SELECT x.done_snap FROM exactly_once_outbox_progress x
                                 WHERE x.lane = l.lane ORDER BY x.b DESC LIMIT 1) c
             WHERE EXISTS (SELECT 1 FROM exactly_once_outbox_events e
                            WHERE e.part = r.part AND e.lane = l.lane
                              AND e.txid >= pg_snapshot_xmin(c.done_snap)
                              AND NOT pg_visible_in_snapshot(e.txid, c.done_snap)));
          EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (false) NOT VALID', v_rel,
                         format('exactly_once_outbox_events_%s_sealed', r.part));
          UPDATE exactly_once_outbox_parts SET sealed_at = now() WHERE part = r.part;
        EXCEPTION WHEN lock_not_available THEN
          NULL;
        END;
      END LOOP;

      FOR r IN SELECT part FROM exactly_once_outbox_parts
                WHERE sealed_at IS NOT NULL AND closed_at <= now() - make_interval(secs => p_keep_ms / 1000.0)
                ORDER BY closed_at LOOP
        v_rel := format('exactly_once_outbox_events_%s', r.part)::regclass;
        BEGIN
          EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_rel);
          SELECT reltuples INTO v_est FROM pg_class WHERE oid = v_rel;
          IF v_est < 1000000 THEN
            EXECUTE format('SELECT count(*) FROM %s', v_rel) INTO v_rows;
          ELSE
            v_rows := v_est::bigint;
          END IF;
          EXECUTE format('TRUNCATE %s', v_rel);
          EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I', v_rel,
                         format('exactly_once_outbox_events_%s_sealed', r.part));
          UPDATE exactly_once_outbox_parts SET opened_at = NULL, closed_at = NULL, sealed_at = NULL
           WHERE part = r.part;
          truncated := truncated || r.part;
          dropped := dropped + v_rows;
        EXCEPTION WHEN lock_not_available THEN
          NULL;
        END;
      END LOOP;
    END
    $$`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP FUNCTION IF EXISTS exactly_once_outbox_rotate(bigint, bigint, integer)`.execute(db);
  await sql`DROP FUNCTION IF EXISTS exactly_once_outbox_compact_progress()`.execute(db);
  await sql`DROP FUNCTION IF EXISTS exactly_once_outbox_advance(smallint[], bigint[], boolean[])`.execute(db);
  await sql`DROP FUNCTION IF EXISTS exactly_once_outbox_claim(integer, integer)`.execute(db);
  await sql`DROP FUNCTION IF EXISTS exactly_once_outbox_fresh()`.execute(db);
}
