import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { IdempotencyService } from '../src/idempotency/service.js';
import type { ClaimedEvent } from '../src/outbox/types.js';
import { RedisListPublisher } from '../src/publishers/redis-list.js';
import { relayConfig, seedPending, timeRelayDrain } from './lib/outbox.js';
import type { BenchOptions, Row } from './lib/report.js';
import { benchPrefix, createBenchDatabase, deleteRedisPrefix, REDIS_URL } from './lib/services.js';
import { round } from './lib/stats.js';

export interface MemoryFigure {
  keys: number;
  /** INFO used_memory growth per key */
  dedupMarkerBytes: number;
  /** MEMORY USAGE, mean over a sample */
  dedupMarkerMemoryUsage: number;
  cachedResultBytes: number;
  cachedResultMemoryUsage: number;
  /** Events the relay published before markers were counted. */
  relayedEvents: number;
  relayedPerSec: number;
  /** Dedup markers left in Redis after the relay published `relayedEvents` (cleanup after COMMIT). */
  markersLeft: number;
  /** INFO used_memory growth over that drain, with the jobs' list deleted, bytes (noisy on a shared server). */
  markerMemoryDelta: number;
}

/**
 * Redis memory: bytes per dedup marker (publish K events, then drop the list so only markers remain) and per cached
 * idempotency result (K completed keys with a small result), as `INFO memory` growth per key and as `MEMORY USAGE`.
 * The shared server's other traffic adds noise to the INFO figure; MEMORY USAGE is per key and exact.
 */
export async function memoryBench(opts: BenchOptions): Promise<{ rows: Row[]; figure: MemoryFigure }> {
  const redis = new Redis(REDIS_URL);
  const prefix = benchPrefix('mem');
  const db = await createBenchDatabase('mem', 4);
  const used = async () => Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1]);
  const sample = async (pattern: string) => {
    const [, keys] = await redis.scan('0', 'MATCH', pattern, 'COUNT', 2000);
    const picked = keys.slice(0, 200);
    const sizes = await Promise.all(picked.map((k) => redis.memory('USAGE', k)));
    return sizes.reduce((a: number, b) => a + Number(b ?? 0), 0) / Math.max(1, picked.length);
  };
  const k = opts.memoryKeys;
  try {
    const list = `${prefix}jobqueue:low_priority`;
    const publisher = new RedisListPublisher(redis, {
      queuePattern: `${prefix}jobqueue:{priority}_priority`,
      dedupWindowMs: 600_000,
    });
    const before = await used();
    for (let i = 0; i < k; i += 500) {
      const events: ClaimedEvent[] = [];
      for (let j = i; j < Math.min(k, i + 500); j++) events.push(event(j));
      await publisher.publish(events);
    }
    await redis.del(list);
    const dedupMarkerBytes = round((await used()) - before, 0) / k;
    const dedupMarkerMemoryUsage = await sample(`{${prefix}*:eo:dedup:*`);

    const service = new IdempotencyService({
      config: configFromObject({
        database: { url: db.url },
        redis: { url: REDIS_URL },
        idempotency: { key_prefix: prefix, storage: { type: 'database', database: { hot_cache: true } } },
      }),
      pool: db.pool,
      redis,
    });
    const before2 = await used();
    for (let i = 0; i < k; i++) {
      const key = service.generateIdempotencyKey('bench', '', randomUUID());
      await service.processWithIdempotency(key, () => ({ status: 'processed', n: i }));
    }
    const cachedResultBytes = round((await used()) - before2, 0) / k;
    const cachedResultMemoryUsage = await sample(`${prefix}cache:*`);
    await service.close();

    const relayed = await relayedMarkers(db, redis, prefix, opts.memoryEvents, used);
    const figure: MemoryFigure = {
      keys: k,
      dedupMarkerBytes: round(dedupMarkerBytes, 0),
      dedupMarkerMemoryUsage: round(dedupMarkerMemoryUsage, 0),
      cachedResultBytes: round(cachedResultBytes, 0),
      cachedResultMemoryUsage: round(cachedResultMemoryUsage, 0),
      relayedEvents: opts.memoryEvents,
      relayedPerSec: relayed.perSec,
      markersLeft: relayed.markers,
      markerMemoryDelta: relayed.delta,
    };
    const withoutCleanupMiB = (opts.memoryEvents * figure.dedupMarkerMemoryUsage) / 2 ** 20;
    opts.progress(`memory: marker ${figure.dedupMarkerBytes} B, cached result ${figure.cachedResultBytes} B`);
    const rows: Row[] = [
      {
        benchmark: `Redis dedup markers after the relay published ${opts.memoryEvents.toLocaleString('en-US')} events`,
        figure: `${relayed.markers} markers = ${round((relayed.markers * figure.dedupMarkerMemoryUsage) / 2 ** 20, 2)} MiB (INFO used_memory delta ${round(relayed.delta / 2 ** 20, 2)} MiB, server-wide)`,
        baseline: `without deleting markers after COMMIT: ${opts.memoryEvents.toLocaleString('en-US')} markers, ~${round(withoutCleanupMiB, 0)} MiB (${figure.dedupMarkerMemoryUsage} B each)`,
        ratio: `${round(relayed.markers / Math.max(1, opts.memoryEvents), 4)} of it (drained at ${relayed.perSec} ev/s, batch 500, 2 loops)`,
        target: '< 10 MB',
        // Counted, not read from INFO: other clients of a shared server move used_memory by more than 10 MB.
        met: relayed.markers * figure.dedupMarkerMemoryUsage < 10 * 2 ** 20,
      },
      {
        benchmark: `Redis bytes per dedup marker (${k} keys)`,
        figure: `${figure.dedupMarkerMemoryUsage} B (MEMORY USAGE)`,
        baseline: `INFO used_memory delta ${figure.dedupMarkerBytes} B/key (noisy on a shared server)`,
        ratio: `${round((figure.dedupMarkerMemoryUsage * 1_000_000) / 2 ** 20, 0)} MiB per million events in the window`,
        target: 'info',
        met: undefined,
      },
      {
        benchmark: `Redis bytes per cached idempotency result (${k} keys)`,
        figure: `${figure.cachedResultMemoryUsage} B (MEMORY USAGE)`,
        baseline: `INFO used_memory delta ${figure.cachedResultBytes} B/key (noisy on a shared server)`,
        ratio: `${round((figure.cachedResultMemoryUsage * 1_000_000) / 2 ** 20, 0)} MiB per million cached keys`,
        target: 'info',
        met: undefined,
      },
    ];
    return { rows, figure };
  } finally {
    await deleteRedisPrefix(redis, prefix);
    redis.disconnect();
    await db.close();
  }
}

/**
 * Seed `n` pending events, drain them with the relay (batch 500, 2 loops), delete the jobs' list, and report how many
 * dedup markers are left and how much `used_memory` grew. Seeding happens before the first memory reading.
 */
async function relayedMarkers(
  db: Awaited<ReturnType<typeof createBenchDatabase>>,
  redis: Redis,
  prefix: string,
  n: number,
  used: () => Promise<number>,
): Promise<{ markers: number; delta: number; perSec: number }> {
  await seedPending(db.pool, n, 1000);
  await db.pool.query('VACUUM ANALYZE exactly_once_outbox');
  const config = relayConfig(db.url, REDIS_URL, `${prefix}r:`, { batch_size: 500, concurrency: 2 });
  const before = await used();
  const seconds = await timeRelayDrain({ config, pool: db.pool, redis, n, timeoutMs: 1_800_000 });
  // DEL, not UNLINK: UNLINK frees a big list in the background, and used_memory would still count the jobs.
  await redis.del(`${prefix}r:jobqueue:low_priority`);
  const delta = (await used()) - before;
  let markers = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `{${prefix}r:*:eo:dedup:*`, 'COUNT', 5000);
    cursor = next;
    markers += keys.length;
  } while (cursor !== '0');
  return { markers, delta: Math.max(0, delta), perSec: Math.round(n / seconds) };
}

function event(i: number): ClaimedEvent {
  return {
    seq: String(i + 1),
    id: randomUUID(),
    aggregateType: 'bench',
    aggregateId: `a${i % 1000}`,
    eventType: 'bench.event',
    tenantId: '',
    queue: null,
    retryCount: 0,
    maxRetries: null,
    createdAt: new Date(),
    payload: `{"n":${i}}`,
    headers: '{}',
    priority: null,
    traceparent: null,
    filepath: null,
    filesize: null,
  };
}
