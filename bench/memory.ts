import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { IdempotencyService } from '../src/idempotency/service.js';
import { MARK_INFIX } from '../src/publishers/hash-tag.js';
import { relayConfig, seedPending, timeRelayDrain } from './lib/outbox.js';
import type { BenchOptions, Row } from './lib/report.js';
import { benchPrefix, createBenchDatabase, deleteRedisPrefix, REDIS_URL } from './lib/services.js';
import { round } from './lib/stats.js';

export interface MemoryFigure {
  keys: number;
  cachedResultBytes: number;
  cachedResultMemoryUsage: number;
  /** Events the relay published in the first drain, and in both drains together. */
  firstEvents: number;
  relayedEvents: number;
  relayedPerSec: number;
  /** High-water mark keys in Redis after the first drain and after both (one destination, 16 lanes). */
  marksAfterFirst: number;
  marksAfterAll: number;
  /** MEMORY USAGE of all mark keys after both drains, bytes. */
  marksBytes: number;
}

/**
 * Redis memory: the relay's dedup state (high-water marks, one hash per lane and destination) after draining a
 * tenth of `memoryEvents` and then all of them, counted and measured with `MEMORY USAGE`; and bytes per cached
 * idempotency result (K completed keys with a small result), as `INFO memory` growth per key and as `MEMORY USAGE`.
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

    const n = opts.memoryEvents;
    const first = Math.max(1, Math.round(n / 10));
    const config = relayConfig(db.url, REDIS_URL, `${prefix}r:`, { batch_size: 500, concurrency: 2 });
    const drain = async (count: number) => {
      await seedPending(db.pool, count, 1000);
      await db.pool.query('VACUUM ANALYZE exactly_once_outbox_events');
      const seconds = await timeRelayDrain({ config, pool: db.pool, redis, n: count, timeoutMs: 1_800_000 });
      await redis.del(`${prefix}r:jobqueue:low_priority`);
      return seconds;
    };
    await drain(first);
    const marksAfterFirst = (await markKeys(redis, prefix)).length;
    const seconds = await drain(n - first);
    const marks = await markKeys(redis, prefix);
    const marksBytes = (await Promise.all(marks.map((m) => redis.memory('USAGE', m)))).reduce(
      (a: number, b) => a + Number(b ?? 0),
      0,
    );
    const figure: MemoryFigure = {
      keys: k,
      cachedResultBytes: round(cachedResultBytes, 0),
      cachedResultMemoryUsage: round(cachedResultMemoryUsage, 0),
      firstEvents: first,
      relayedEvents: n,
      relayedPerSec: Math.round((n - first) / seconds),
      marksAfterFirst,
      marksAfterAll: marks.length,
      marksBytes,
    };
    opts.progress(`memory: ${marks.length} marks after ${n} events, cached result ${figure.cachedResultBytes} B`);
    const rows: Row[] = [
      {
        benchmark: `Redis dedup state after the relay published ${n.toLocaleString('en-US')} events (1 destination)`,
        figure: `${marks.length} high-water mark keys, ${marksBytes.toLocaleString('en-US')} B (MEMORY USAGE)`,
        baseline: `after the first ${first.toLocaleString('en-US')} events: ${marksAfterFirst} keys`,
        ratio: `${round(marks.length / Math.max(1, marksAfterFirst), 2)}x the keys for ${round(n / first, 0)}x the events`,
        target: '<= 16 keys per destination (lanes), whatever the traffic',
        met: marks.length <= 16 && marks.length === marksAfterFirst,
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

/** Every high-water mark key the bench's relays wrote (SCAN, never KEYS). */
async function markKeys(redis: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `{${prefix}r:*${MARK_INFIX}*`, 'COUNT', 5000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}
