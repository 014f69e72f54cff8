import { Redis } from 'ioredis';
import { Kysely, PostgresDialect, sql } from 'kysely';
import type pg from 'pg';
import type { HealthSource } from '../../admin/readiness.js';
import { type AdminServerHandle, startAdminServer } from '../../admin/server.js';
import type { Config } from '../../config/load-config.js';
import { configFromObject } from '../../config/load-config.js';
import { kyselyFromPool, migrateToLatest } from '../../db/migrator.js';
import { createPool, poolTimeouts } from '../../db/pool.js';
import type { Logger } from '../../logger.js';
import { Manager } from '../../manager.js';
import { Metrics } from '../../metrics/metrics.js';
import { storeInOutbox } from '../../outbox/writer.js';
import { createRedis } from '../../redis.js';
import { type Command, parseFlags, UsageError } from '../command.js';
import { cliContext } from '../context.js';

const USAGE = `Usage: exactly-once demo [--orders N] [--port N] [--exit] [--config FILE]

Migrates, then writes sample orders with their events in transactions (every fifth transaction is
rolled back on purpose), runs a relay and an idempotent consumer, redelivers a few jobs, and prints
what flowed. Jobs go to the lists exactly-once-demo:jobqueue:{high,low}_priority, so no real queue
is touched; the demo's tables are demo_orders and demo_shipments.

In a terminal it then prints the dashboard's URL and keeps the relay and the dashboard up until
Ctrl-C. Without a terminal (CI, scripts, docker compose), or with --exit, it exits at once.

  --port N   dashboard/admin port (admin.port, default 8080; 0 picks a free one)
  --exit     exit after the summary even in a terminal`;

const PREFIX = 'exactly-once-demo:';
const QUEUES = [`${PREFIX}jobqueue:high_priority`, `${PREFIX}jobqueue:low_priority`];

interface DemoJob {
  id: string;
  aggregate_id: string;
  payload: { orderId: string };
}

interface DemoTables {
  demo_orders: { id: string; customer: string; total: number };
  demo_shipments: { order_id: string; event_id: string };
}

interface Written {
  customer: string;
  seq: number;
  at: number;
}

export const demoCommand: Command = {
  name: 'demo',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      orders: { type: 'string', default: '20' },
      port: { type: 'string' },
      exit: { type: 'boolean', default: false },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const orders = Number(values.orders);
    if (!Number.isInteger(orders) || orders < 1 || orders > 100_000) throw new UsageError('--orders must be 1..100000');
    const port = values.port === undefined ? undefined : Number(values.port);
    if (port !== undefined && !(/^\d{1,5}$/.test(String(values.port)) && port <= 65535)) {
      throw new UsageError('--port must be an integer from 0 to 65535');
    }
    // Only a person at a terminal can open the page; CI, scripts and `docker compose` get the summary and an exit.
    const stayUp = process.stdout.isTTY === true && values.exit !== true;
    // Human output here; the relay's JSON logs only when something goes wrong (LOG_LEVEL overrides).
    const base = cliContext(values, { logLevel: 'warn' });
    const config = configFromObject({
      database: { url: base.config.database.url },
      redis: { url: base.config.redis.url },
      outbox: { queue_pattern: `${PREFIX}jobqueue:{priority}_priority`, batch_size: 100 },
    });
    // The dashboard follows the operator's admin settings (host, port, token, read-only) from file and environment.
    const adminConfig = { ...config, admin: base.config.admin };
    const logger = base.logger;
    const pool = createPool(config.database.url, logger, { max: 8, ...poolTimeouts(config.database) });
    const redis = createRedis(config.redis.url, logger, {
      enableOfflineQueue: true,
      connectTimeout: config.redis.connectTimeout,
    });
    const consumer = new Redis(config.redis.url, { maxRetriesPerRequest: null });
    const db = new Kysely<DemoTables>({ dialect: new PostgresDialect({ pool }) });
    // The demo's relay counts what it does like the daemon's, and the summary shows the counter next to the data.
    const metrics = new Metrics({ config: config.metrics, processMetrics: false, logger });
    const manager = new Manager(config, { pool, redis, logger, metrics });
    const relay = manager.createRelay();
    let writing = true;
    let consuming: Promise<void> | undefined;
    try {
      console.log(`database ${redact(config.database.url)}, redis ${redact(config.redis.url)}`);
      const applied = await migrateToLatest(kyselyFromPool(pool));
      console.log(applied.length ? `migrated: ${applied.join(', ')}` : 'schema up to date');
      await sql`CREATE TABLE IF NOT EXISTS demo_orders (id text PRIMARY KEY, customer text NOT NULL, total int NOT NULL)`.execute(
        db,
      );
      await sql`CREATE TABLE IF NOT EXISTS demo_shipments (order_id text PRIMARY KEY, event_id text NOT NULL)`.execute(
        db,
      );
      await redis.del(...QUEUES);
      await relay.start();

      const written = new Map<string, Written>();
      const seen = new Map<string, number>();
      const consumed: DemoJob[] = [];
      const latencies: number[] = [];
      const lastSeq = new Map<string, number>();
      let outOfOrder = 0;

      // The worker: each job's effect (a shipment row) commits together with its idempotency key.
      const ship = (job: DemoJob) =>
        manager.processInTransaction(manager.generateIdempotencyKey('demo-shipping', '', job.id), async (trx) => {
          await trx.insertInto('demo_shipments').values({ order_id: job.payload.orderId, event_id: job.id }).execute();
          return { shipped: job.payload.orderId };
        });

      // A job can arrive before the producer has noted its commit; park it until the producer catches up.
      let early: { queue: string; job: DemoJob }[] = [];
      const accept = async (queue: string, job: DemoJob): Promise<boolean> => {
        const origin = written.get(job.id);
        if (!origin) return false;
        const { duplicate } = await ship(job);
        seen.set(job.id, (seen.get(job.id) ?? 0) + 1);
        consumed.push(job);
        latencies.push(Date.now() - origin.at);
        const key = `${origin.customer}/${queue}`;
        if ((lastSeq.get(key) ?? 0) > origin.seq) outOfOrder++;
        lastSeq.set(key, origin.seq);
        console.log(
          `  consumed …${job.id.slice(-8)} ${job.aggregate_id} ${queue.padEnd(4)} order #${origin.seq}${duplicate ? ' (duplicate)' : ''}`,
        );
        return true;
      };
      const deadline = Date.now() + 20_000;
      consuming = (async () => {
        while ((writing || seen.size < written.size) && Date.now() < deadline) {
          const retry = early;
          early = [];
          for (const e of retry) if (!(await accept(e.queue, e.job))) early.push(e);
          // High priority first, like a go-redis-work-queue worker; BRPOP takes the oldest job of a list.
          const popped = await consumer.brpop(...QUEUES, 1);
          if (!popped) continue;
          const job = JSON.parse(popped[1]) as DemoJob;
          const queue = popped[0].endsWith('high_priority') ? 'high' : 'low';
          if (!(await accept(queue, job))) early.push({ queue, job });
        }
      })();

      const runId = Date.now().toString(36);
      let rolledBack = 0;
      for (let i = 1; i <= orders; i++) {
        const id = `${runId}-${i}`;
        const customer = `customer-${i % 4}`;
        const priority = i % 3 === 0 ? 'high' : 'low';
        try {
          const event = await db.transaction().execute(async (trx) => {
            await trx
              .insertInto('demo_orders')
              .values({ id, customer, total: i * 10 })
              .execute();
            const stored = await storeInOutbox(
              trx,
              {
                aggregateType: 'customer',
                aggregateId: customer,
                eventType: 'order.created',
                payload: { orderId: id, total: i * 10, filepath: `/orders/${id}.json` },
                headers: { priority },
                // Named explicitly, so any relay of the same database (say docker-compose's) routes it here too.
                queue: `${PREFIX}jobqueue:${priority}_priority`,
                // The demo's queue_pattern is what allows this destination.
              },
              config.outbox,
            );
            if (i % 5 === 0) throw new RolledBackOnPurpose();
            return stored;
          });
          written.set(event.id, { customer, seq: i, at: Date.now() });
        } catch (err) {
          if (!(err instanceof RolledBackOnPurpose)) throw err;
          rolledBack++;
        }
      }
      writing = false;
      await consuming;
      console.log(
        `wrote ${written.size} orders with their events; rolled back ${rolledBack} (those must never appear)`,
      );

      // Redeliver a few jobs, as a crashed worker or a retrying queue would: the effect must not happen again.
      const redelivered = consumed.slice(0, 3);
      const duplicatesCaught = (await Promise.all(redelivered.map(ship))).filter((r) => r.duplicate).length;
      const shipments = await pool.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM demo_shipments WHERE event_id = ANY($1)',
        [[...written.keys()]],
      );
      const shipped = shipments.rows[0]?.n ?? 0;

      const duplicates = [...seen.values()].filter((n) => n > 1).length;
      const unexpected = early.length;
      latencies.sort((a, b) => a - b);
      const p50 = latencies[Math.floor(latencies.length / 2)] ?? 0;
      console.log('');
      console.log(`committed events      ${written.size}`);
      console.log(`consumed              ${seen.size}`);
      console.log(`pushed twice          ${duplicates}`);
      console.log(`rolled-back seen      ${unexpected}`);
      console.log(`out of order          ${outOfOrder}`);
      console.log(`redelivered           ${redelivered.length}, recognised as duplicates ${duplicatesCaught}`);
      console.log(`shipments             ${shipped} (one per committed order)`);
      console.log(`commit->consume p50   ${p50} ms`);
      console.log(
        `relay published       ${(await metrics.outboxPublishedTotal.get()).values[0]?.value ?? 0} (exactly_once_outbox_published_total)`,
      );
      const ok =
        seen.size === written.size &&
        duplicates === 0 &&
        unexpected === 0 &&
        outOfOrder === 0 &&
        duplicatesCaught === redelivered.length &&
        shipped === written.size;
      console.log(ok ? 'OK: every committed event had its effect exactly once, in order' : 'FAILED: see above');
      if (stayUp) await serveDashboard({ manager, metrics, relay, pool, logger, config: adminConfig, port });
      return ok ? 0 : 1;
    } finally {
      // On an error the consumer may still be blocked in BRPOP: end it, and its rejection, before closing up.
      writing = false;
      consumer.disconnect();
      await consuming?.catch(() => {});
      await relay.stop();
      await manager.close();
      redis.disconnect();
      await pool.end();
    }
  },
};

class RolledBackOnPurpose extends Error {}

/**
 * The dashboard over the demo's relay, until SIGINT or SIGTERM. A port already taken (say by docker compose's relay)
 * is reported, not fatal: the demo itself has succeeded.
 */
async function serveDashboard(options: {
  manager: Manager;
  metrics: Metrics;
  relay: HealthSource;
  pool: pg.Pool;
  logger: Logger;
  config: Config;
  port: number | undefined;
}): Promise<void> {
  let admin: AdminServerHandle;
  try {
    admin = await startAdminServer({
      manager: options.manager,
      metrics: options.metrics,
      relay: options.relay,
      readPool: options.pool,
      logger: options.logger,
      config: options.config,
      port: options.port,
    });
  } catch (err) {
    // AdminPortInUseError says which port and what to do (--port 0).
    console.log(`\ndashboard not started: ${(err as Error).message}`);
    return;
  }
  const url = new URL(admin.url);
  if (url.hostname === '0.0.0.0' || url.hostname === '[::]') url.hostname = 'localhost';
  console.log(`\nDashboard: ${url.origin}/  (the relay keeps running; Ctrl-C to stop)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  console.log('stopping');
  await admin.close();
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
