import { type Kysely, sql } from 'kysely';

/**
 * One index for the operator dashboard's reads (src/outbox/insights.ts). Measured with EXPLAIN ANALYZE on 1,000,000
 * rows (7 days of history, 50,000 aggregates, 1,000 pending, 200 failed) on the shared 2-core dev machine:
 *
 * - `_published_brin (published_at)` (minmax-multi, which tolerates the out-of-order values that updates and reused
 *   free space leave): `GET /overview`'s events published per minute over the last 15 minutes, from every relay.
 *   Before: a parallel seq scan, 1.5 s; after: a bitmap scan of the last pages, 1.5 ms. 88 kB for 1M rows and
 *   nothing measurable on writes.
 *
 * Not indexed, on purpose:
 * - `(aggregate_id, aggregate_type, seq)` over every status: it took `GET /outbox?aggregate_id=...` from 570-1300 ms
 *   a page to 2 ms at 1M rows, but every insert and every status change (not HOT: `status` is in partial-index
 *   predicates) adds an entry, on the producer's and the relay's hot paths: a bulk insert of 100,000 rows took
 *   13-22 s with it against 10-14 s without. Pending rows are found by aggregate through 0001's
 *   `_pending_aggregate`; an operator who looks up history by aggregate often can add it
 *   (`CREATE INDEX CONCURRENTLY exactly_once_outbox_aggregate ON exactly_once_outbox (aggregate_id, aggregate_type, seq)`)
 *   knowing that cost.
 * - `created_at` (`since`/`until`). Ordered by seq, the planner keeps walking the `_seq` index with the time as a
 *   filter whatever index exists (a BRIN on created_at was ignored), so a narrow window far from the page start
 *   walks the rows in between (3-4 s at 1M rows); `event_type`, `tenant_id`, `queue`: common values fill a page from
 *   the `_seq` walk in a few ms.
 */
// biome-ignore lint/suspicious/noExplicitAny: migrations must not depend on the app's schema type
export async function up(db: Kysely<any>): Promise<void> {
  await sql`CREATE INDEX exactly_once_outbox_published_brin
              ON exactly_once_outbox USING brin (published_at timestamptz_minmax_multi_ops)`.execute(db);
}

// biome-ignore lint/suspicious/noExplicitAny: see up()
export async function down(db: Kysely<any>): Promise<void> {
  await sql`DROP INDEX IF EXISTS exactly_once_outbox_published_brin`.execute(db);
}
