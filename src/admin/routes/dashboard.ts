import { postgresUses } from '../../config/postgres-use.js';
import { OutboxEventNotFoundError } from '../../errors.js';
import { GROUPS_DEFAULT_LIMIT, GROUPS_MAX_LIMIT, HELD_DEFAULT_LIMIT, HELD_MAX_LIMIT } from '../../outbox/insights.js';
import type { OutboxInspector } from '../../outbox/inspector.js';
import { type AdminContext, type AdminRoute, API_PREFIX, outboxInspector, requireOutbox } from '../route.js';
import { failedGroupJson, heldAggregateJson, outboxEventJson, overviewBacklogJson } from '../serialize.js';
import { relaysConnected, type TablesReport, tableHealth } from '../table-health.js';
import { Fields, noQuery } from '../validate.js';

/** The overview's chart: this many buckets of this size, oldest first, the last one the minute in progress. */
const RATE_BUCKET_MS = 60_000;
const RATE_BUCKETS = 15;

/**
 * What the dashboard reads besides `GET /outbox` and `GET /idempotency`: one event, the overview, held aggregates,
 * dead events grouped by error, and table health. Shapes: README, "Operations", the admin API table. Outbox reads go
 * through the outbox's inspector, so they read Redis with `outbox.storage_type: redis`.
 */
export function dashboardRoutes(ctx: AdminContext): AdminRoute[] {
  return [
    {
      method: 'GET',
      url: `${API_PREFIX}/outbox/events/:id`,
      access: 'read',
      async handler(request) {
        noQuery(request.query);
        const { id } = request.params as { id: string };
        requireOutbox(ctx);
        const event = await outboxInspector(ctx).get(id);
        if (!event) throw new OutboxEventNotFoundError(id);
        return { event: outboxEventJson(event) };
      },
    },
    {
      method: 'GET',
      url: `${API_PREFIX}/overview`,
      access: 'read',
      async handler(request) {
        noQuery(request.query);
        requireOutbox(ctx);
        const { config } = ctx.manager;
        const now = Date.now();
        const since = now - (RATE_BUCKETS - 1) * RATE_BUCKET_MS;
        const rule = { queuePattern: config.outbox.queuePattern, defaultPriority: config.outbox.defaultPriority };
        const inspector = outboxInspector(ctx);
        const inRedis = inspector.storage === 'redis';
        const [backlog, traffic, relays, readiness] = await Promise.all([
          inspector.overviewBacklog(),
          inspector.traffic(rule, since, RATE_BUCKET_MS),
          inspector.relaysAwake ? inspector.relaysAwake() : relaysConnected(ctx.readPool),
          ctx.readiness(),
          ctx.rates?.sample(),
        ]);
        const local = ctx.rates?.buckets(since, now);
        const published = new Map(traffic.buckets.map((b) => [b.at, b.published]));
        const grid: { at: number; retried?: number; failed?: number }[] = local ?? gridFrom(since, now);
        const points = grid.map((b) => ({
          at: new Date(b.at).toISOString(),
          published: published.get(b.at) ?? 0,
          retried: b.retried ?? null,
          failed: b.failed ?? null,
        }));
        return {
          storage: config.outbox.storageType,
          read_only: ctx.readOnly,
          auth: ctx.auth,
          backlog: overviewBacklogJson(backlog),
          rates: {
            bucket_seconds: RATE_BUCKET_MS / 1000,
            points,
            source: {
              published: inRedis
                ? `redis: published time of every relay's events, the newest ${traffic.capped ? 'few thousand (capped)' : 'all'}`
                : 'postgres: per-minute traffic rows of every relay',
              retried: local ? 'process: this relay since it started' : 'unavailable: metrics are off',
              failed: local ? 'process: this relay since it started' : 'unavailable: metrics are off',
            },
          },
          // Which figures are lower bounds: the walks of the Redis outbox stop at a cap (README, GET /overview).
          ...(inRedis
            ? {
                destinations_capped: traffic.capped,
                destinations_capped_by: traffic.cappedBy ?? {
                  published: traffic.capped,
                  pending: traffic.capped,
                  failed: traffic.capped,
                },
              }
            : {}),
          destinations: traffic.destinations.map((d) => ({
            queue: d.queue,
            pending: d.pending,
            failed: d.failed,
            published_15m: d.publishedRecent,
          })),
          relays: {
            awake: relays,
            source: inRedis
              ? 'redis: relay doorbell subscriptions (PUBSUB NUMSUB)'
              : 'postgres: relay LISTEN connections (pg_stat_activity)',
          },
          health: { postgres: readiness.checks.postgres, redis: readiness.checks.redis },
        };
      },
    },
    {
      method: 'GET',
      url: `${API_PREFIX}/outbox/held`,
      access: 'read',
      async handler(request) {
        const limit = new Fields(request.query, 'query', ['limit']).optionalInt('limit', 1, HELD_MAX_LIMIT);
        requireOutbox(ctx);
        const held = await outboxInspector(ctx).held(limit ?? HELD_DEFAULT_LIMIT);
        return { aggregates: held.map(heldAggregateJson) };
      },
    },
    {
      method: 'GET',
      url: `${API_PREFIX}/outbox/failed/groups`,
      access: 'read',
      async handler(request) {
        const limit = new Fields(request.query, 'query', ['limit']).optionalInt('limit', 1, GROUPS_MAX_LIMIT);
        requireOutbox(ctx);
        const groups = await outboxInspector(ctx).failedGroups(limit ?? GROUPS_DEFAULT_LIMIT);
        return { groups: groups.map(failedGroupJson) };
      },
    },
    {
      method: 'GET',
      url: `${API_PREFIX}/tables`,
      access: 'read',
      async handler(request) {
        noQuery(request.query);
        const { config } = ctx.manager;
        const inspector = config.outbox.enabled ? outboxInspector(ctx) : undefined;
        if (inspector?.memory && inspector.cleanupDue) return redisTables(ctx, inspector as RedisViews);
        const report = await tableHealth(ctx.readPool, {
          idempotencyTable: config.idempotency.storage.database.tableName,
          outboxCleanupAfterMs: config.outbox.cleanupAfter,
        });
        return {
          tables: report.tables.map(tableJson),
          oldest_transaction: oldestTransactionJson(report),
          cleanup: {
            outbox_rows_due: report.cleanup.outboxRowsDue,
            idempotency_keys_expired: report.cleanup.idempotencyKeysExpired,
            capped: report.cleanup.capped,
          },
        };
      },
    },
  ];
}

/**
 * `/tables` with the outbox in Redis: the outbox's keys and their memory instead of the outbox table, the
 * Postgres tables only when this config keeps something there (idempotency keys), and the cleanup work waiting in
 * Redis. `idempotency_keys_expired` is `null` when the keys are not in Postgres (Redis expires its own).
 */
type RedisViews = Required<Pick<OutboxInspector, 'memory' | 'cleanupDue'>>;

async function redisTables(ctx: AdminContext, inspector: RedisViews) {
  const { config } = ctx.manager;
  const pg = postgresUses(config).length > 0;
  const [memory, due, report] = await Promise.all([
    inspector.memory(),
    inspector.cleanupDue(config.outbox.cleanupAfter),
    pg
      ? tableHealth(ctx.readPool, {
          idempotencyTable: config.idempotency.storage.database.tableName,
          outboxCleanupAfterMs: config.outbox.cleanupAfter,
        })
      : undefined,
  ]);
  return {
    storage: 'redis',
    tables: (report?.tables ?? []).filter((t) => !t.name.startsWith('exactly_once_outbox_')).map(tableJson),
    oldest_transaction: report ? oldestTransactionJson(report) : null,
    redis_outbox: {
      keys: memory.keys,
      events: {
        pending: memory.events.pending,
        published: memory.events.published,
        failed: memory.events.failed,
        sampled: memory.events.sampled,
        bytes_per_event: memory.events.bytesPerEvent,
      },
      estimated_bytes: memory.estimatedBytes,
      used_memory_bytes: memory.usedMemoryBytes,
      maxmemory_bytes: memory.maxmemoryBytes,
    },
    cleanup: {
      outbox_rows_due: due.due,
      idempotency_keys_expired: report ? report.cleanup.idempotencyKeysExpired : null,
      capped: due.capped || (report?.cleanup.capped ?? false),
    },
  };
}

function tableJson(t: TablesReport['tables'][number]) {
  return {
    name: t.name,
    total_bytes: t.totalBytes,
    table_bytes: t.tableBytes,
    index_bytes: t.indexBytes,
    live_tuples: t.liveTuples,
    dead_tuples: t.deadTuples,
    last_vacuum: t.lastVacuum?.toISOString() ?? null,
    last_autovacuum: t.lastAutovacuum?.toISOString() ?? null,
    last_analyze: t.lastAnalyze?.toISOString() ?? null,
    last_autoanalyze: t.lastAutoanalyze?.toISOString() ?? null,
    indexes: t.indexes,
  };
}

function oldestTransactionJson(report: TablesReport) {
  const tx = report.oldestTransaction;
  return (
    tx && {
      age_seconds: tx.ageSeconds,
      pid: tx.pid,
      state: tx.state,
      application_name: tx.applicationName,
      backend_xmin_age: tx.backendXminAge,
    }
  );
}

function gridFrom(since: number, now: number): { at: number }[] {
  const out: { at: number }[] = [];
  for (let at = Math.floor(since / RATE_BUCKET_MS) * RATE_BUCKET_MS; at <= now; at += RATE_BUCKET_MS) out.push({ at });
  return out;
}
