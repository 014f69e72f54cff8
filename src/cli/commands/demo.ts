import { Redis } from 'ioredis';
import { Kysely, PostgresDialect, sql } from 'kysely';
import { configFromObject } from '../../config/load-config.js';
import { kyselyFromPool, migrateToLatest } from '../../db/migrator.js';
import { createPool } from '../../db/pool.js';
import { Manager } from '../../manager.js';
import { storeInOutbox } from '../../outbox/writer.js';
import { createRedis } from '../../redis.js';
import { type Command, parseFlags, UsageError } from '../command.js';
import { cliContext } from '../context.js';

const USAGE = `Usage: exactly-once demo [--orders N] [--config FILE]

Migrates, then writes sample orders with their events in transactions (every fifth transaction is
rolled back on purpose), runs a relay and a consumer, and prints what flowed. Jobs go to the lists
exactly-once-demo:jobqueue:{high,low}_priority so no real queue is touched.`;

interface DemoJob {
  id: string;
  aggregate_id: string;
}

interface DemoTables {
  demo_orders: { id: string; customer: string; total: number };
}

export const demoCommand: Command = {
  name: 'demo',
  summary: 'write orders and events, relay them, consume them, and show what flowed',
  async run(argv) {
    const { values } = parseFlags(argv, { orders: { type: 'string', default: '20' } });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const orders = Number(values.orders);
    // parseArgs gives strings for string options
    if (!Number.isInteger(orders) || orders < 1 || orders > 100_000) throw new UsageError('--orders must be 1..100000');
    // Human output here; the relay's JSON logs only when something goes wrong (LOG_LEVEL overrides).
    const base = cliContext(values, { logLevel: 'warn' });
    const prefix = 'exactly-once-demo:';
    const config = configFromObject({
      database: { url: base.config.database.url },
      redis: { url: base.config.redis.url },
      outbox: { queue_pattern: `${prefix}jobqueue:{priority}_priority`, batch_size: 100 },
    });
    const logger = base.logger;
    const pool = createPool(config.database.url, logger, { max: 8 });
    const redis = createRedis(config.redis.url, logger, { enableOfflineQueue: true });
    const consumer = new Redis(config.redis.url, { maxRetriesPerRequest: null });
    const migrator = kyselyFromPool(pool);
    const db = new Kysely<DemoTables>({ dialect: new PostgresDialect({ pool }) });
    const manager = new Manager(config, { pool, redis, logger });
    const relay = manager.createRelay();
    const queues = [`${prefix}jobqueue:high_priority`, `${prefix}jobqueue:low_priority`];
    try {
      console.log(`database ${redact(config.database.url)}, redis ${redact(config.redis.url)}`);
      const applied = await migrateToLatest(migrator);
      console.log(applied.length ? `migrated: ${applied.join(', ')}` : 'schema up to date');
      await sql`CREATE TABLE IF NOT EXISTS demo_orders (id text PRIMARY KEY, customer text NOT NULL, total int NOT NULL)`.execute(
        db,
      );
      await redis.del(...queues);
      await relay.start();

      const committed = new Map<string, { customer: string; seq: number; at: number }>();
      const seen = new Map<string, number>();
      const latencies: number[] = [];
      const lastSeqPerCustomer = new Map<string, number>();
      let outOfOrder = 0;
      let unexpected = 0;
      const deadline = Date.now() + 20_000;
      let writing = true;
      // A job can arrive before its producer has noted the commit; park it until the producer catches up.
      let early: { queue: string; job: DemoJob }[] = [];
      const accept = (queue: string, job: DemoJob): boolean => {
        const origin = committed.get(job.id);
        if (!origin) return false;
        seen.set(job.id, (seen.get(job.id) ?? 0) + 1);
        latencies.push(Date.now() - origin.at);
        const key = `${origin.customer}/${queue}`;
        if ((lastSeqPerCustomer.get(key) ?? 0) > origin.seq) outOfOrder++;
        lastSeqPerCustomer.set(key, origin.seq);
        console.log(`  consumed …${job.id.slice(-8)} ${job.aggregate_id} ${queue.padEnd(4)} order #${origin.seq}`);
        return true;
      };
      const consuming = (async () => {
        while ((writing || seen.size < committed.size) && Date.now() < deadline) {
          early = early.filter((e) => !accept(e.queue, e.job));
          // High priority first, like a go-redis-work-queue worker; BRPOP takes the oldest job of a list.
          const popped = await consumer.brpop(...queues, 1);
          if (!popped) continue;
          const job = JSON.parse(popped[1]) as DemoJob;
          const queue = popped[0].endsWith('high_priority') ? 'high' : 'low';
          if (!accept(queue, job)) early.push({ queue, job });
        }
        early = early.filter((e) => !accept(e.queue, e.job));
        unexpected = early.length;
      })();
      const runId = Date.now().toString(36);
      let rolledBack = 0;
      for (let i = 1; i <= orders; i++) {
        const id = `${runId}-${i}`;
        const customer = `customer-${i % 4}`;
        const rollback = i % 5 === 0;
        const priority = i % 3 === 0 ? 'high' : 'low';
        try {
          const events = await db.transaction().execute(async (trx) => {
            await trx
              .insertInto('demo_orders')
              .values({ id, customer, total: i * 10 })
              .execute();
            const stored = await storeInOutbox(trx, [
              {
                aggregateType: 'customer',
                aggregateId: customer,
                eventType: 'order.created',
                payload: { orderId: id, total: i * 10, filepath: `/orders/${id}.json` },
                headers: { priority },
                // Named explicitly, so any relay of the same database (say docker-compose's) routes it here too.
                queue: `${prefix}jobqueue:${priority}_priority`,
              },
            ]);
            if (rollback) throw new Error('rolled back on purpose');
            return stored;
          });
          for (const e of events) committed.set(e.id, { customer, seq: i, at: Date.now() });
        } catch (err) {
          if ((err as Error).message !== 'rolled back on purpose') throw err;
          rolledBack++;
        }
      }
      writing = false;
      await consuming;
      console.log(
        `wrote ${committed.size} orders with their events; rolled back ${rolledBack} (their events must never appear)`,
      );

      const duplicates = [...seen.values()].filter((n) => n > 1).length;
      latencies.sort((a, b) => a - b);
      const p50 = latencies[Math.floor(latencies.length / 2)] ?? 0;
      console.log('');
      console.log(`committed events   ${committed.size}`);
      console.log(`consumed           ${seen.size}`);
      console.log(`duplicates         ${duplicates}`);
      console.log(`rolled-back seen   ${unexpected}`);
      console.log(`out of order       ${outOfOrder}`);
      console.log(`commit->consume    p50 ${p50} ms`);
      const ok = seen.size === committed.size && duplicates === 0 && unexpected === 0 && outOfOrder === 0;
      console.log(ok ? 'OK: every committed event arrived exactly once, in order' : 'FAILED: see above');
      return ok ? 0 : 1;
    } finally {
      await relay.stop();
      consumer.disconnect();
      redis.disconnect();
      await pool.end();
    }
  },
};

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
