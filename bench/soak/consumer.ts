import { Redis } from 'ioredis';
import { configFromObject } from '../../src/config/load-config.js';
import { createPool } from '../../src/db/pool.js';
import { IdempotencyService } from '../../src/idempotency/service.js';
import { silentLogger } from '../../src/logger.js';

/**
 * A soak consumer (a child process of bench/soak/main.ts): the reliable-queue pattern with exactly-once effects.
 *
 * It moves one job at a time from its source list into its own processing list (BLMOVE, atomic in Redis), applies the
 * job's effect with `processInTransaction` keyed by the event id (the effect row and the idempotency key commit
 * together), then removes the job from the processing list. Whatever it finds in the processing list is processed
 * first, so a job is never lost to a crash between pop and processing (a plain BRPOP would lose it), and a job whose
 * effect committed but whose removal did not is answered as a duplicate the next time: no second effect.
 *
 * argv[2]: JSON { databaseUrl, redisUrl, source, processing, name, soakDir } (`soakDir` only marks the process as
 * the soak's, for its watchdog).
 */
const args = JSON.parse(process.argv[2] ?? '{}') as {
  databaseUrl: string;
  redisUrl: string;
  source: string;
  processing: string;
  name: string;
  soakDir?: string;
};
// The soak kills its consumers when it ends; should it die first, do not run on as an orphan.
const parent = process.ppid;

const config = configFromObject({
  database: { url: args.databaseUrl },
  redis: { url: args.redisUrl },
  idempotency: { lease: '5s', wait_timeout: '2s', storage: { type: 'database', database: { hot_cache: true } } },
});
const pool = createPool(args.databaseUrl, silentLogger, { max: 3 });
const service = new IdempotencyService({ config, pool });
// Fail fast while Redis is down: the loop below backs off and tries again.
const redis = new Redis(args.redisUrl, {
  connectionName: args.name, // the soak waits for its consumers by name (CLIENT LIST)
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  retryStrategy: () => 100,
});
redis.on('error', () => {});

interface Job {
  id: string;
  aggregate_id: string;
  payload: { n: number };
}

async function apply(raw: string): Promise<void> {
  const job = JSON.parse(raw) as Job;
  const key = service.generateIdempotencyKey('soak', '', job.id);
  await service.processInTransaction(key, async (_trx, client) => {
    await client.query('INSERT INTO soak_effects (event_id, aggregate_id, n, consumer) VALUES ($1, $2, $3, $4)', [
      job.id,
      job.aggregate_id,
      job.payload.n,
      args.name,
    ]);
    return { applied: true };
  });
}

let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
});

let failures = 0;
while (!stopping && process.ppid === parent) {
  try {
    // The oldest unfinished job first (left-pushed, so it is at the right end).
    let raw = await redis.lindex(args.processing, -1);
    raw ??= await redis.blmove(args.source, args.processing, 'RIGHT', 'LEFT', 0.5);
    if (raw === null) continue;
    await apply(raw);
    await redis.lrem(args.processing, -1, raw);
    failures = 0;
  } catch {
    // Redis or Postgres away (the soak restarts and terminates them), or the source key is not a list for a moment.
    failures++;
    await new Promise((r) => setTimeout(r, Math.min(500, 20 * failures)));
  }
}
redis.disconnect();
await service.close();
await pool.end();
process.exit(0);
