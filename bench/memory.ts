import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { configFromObject } from '../src/config/load-config.js';
import { IdempotencyService } from '../src/idempotency/processor.js';
import type { ClaimedEvent } from '../src/outbox/types.js';
import { RedisListPublisher } from '../src/publishers/redis-list.js';
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

    const figure: MemoryFigure = {
      keys: k,
      dedupMarkerBytes: round(dedupMarkerBytes, 0),
      dedupMarkerMemoryUsage: round(dedupMarkerMemoryUsage, 0),
      cachedResultBytes: round(cachedResultBytes, 0),
      cachedResultMemoryUsage: round(cachedResultMemoryUsage, 0),
    };
    opts.progress(`memory: marker ${figure.dedupMarkerBytes} B, cached result ${figure.cachedResultBytes} B`);
    const rows: Row[] = [
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
