import { type Kysely, sql } from 'kysely';

/**
 * The outbox table. Every OutboxEvent field of the reference document (docs/reference-api.md), plus what the relay needs:
 * `seq` (write order), `next_attempt_at` (retry schedule), `last_error`, `queue` (destination override), `tenant_id`.
 *
 * Indexes, each for one query:
 * - `_pending (seq) WHERE status = 'pending'`: the claim scans the oldest due events in write order; a partial index
 *   keeps that scan the size of the backlog, not of the retained history (millions of published rows).
 * - `_pending_aggregate (aggregate_type, aggregate_id, seq) WHERE status = 'pending'`: per-aggregate order checks
 *   ("is an earlier event of this aggregate still waiting?") and fetching one aggregate's run of events.
 * - `_seq` unique: the relay marks rows by seq; cleanup walks history oldest first.
 * - `_failed (seq) WHERE status = 'failed'`: operators list and replay dead events.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the app's schema type
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE exactly_once_outbox (
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
  await sql`CREATE UNIQUE INDEX exactly_once_outbox_seq ON exactly_once_outbox (seq)`.execute(db);
  await sql`CREATE INDEX exactly_once_outbox_pending ON exactly_once_outbox (seq) WHERE status = 'pending'`.execute(db);
  await sql`CREATE INDEX exactly_once_outbox_pending_aggregate
              ON exactly_once_outbox (aggregate_type, aggregate_id, seq) WHERE status = 'pending'`.execute(db);
  await sql`CREATE INDEX exactly_once_outbox_failed ON exactly_once_outbox (seq) WHERE status = 'failed'`.execute(db);

  // One NOTIFY per inserting statement (not per row); Postgres delivers it at COMMIT and never for a rollback,
  // so relays wake exactly when there is committed work, at no extra round trip for the producer.
  await sql`
    CREATE FUNCTION exactly_once_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('exactly_once_outbox', '');
      RETURN NULL;
    END
    $$`.execute(db);
  await sql`
    CREATE TRIGGER exactly_once_outbox_notify AFTER INSERT ON exactly_once_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION exactly_once_outbox_notify()`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP TABLE IF EXISTS exactly_once_outbox`.execute(db);
  await sql`DROP FUNCTION IF EXISTS exactly_once_outbox_notify()`.execute(db);
}
