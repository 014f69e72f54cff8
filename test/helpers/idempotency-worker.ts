/**
 * A worker process for the idempotency crash and concurrency tests. Reads one JSON argument, prints JSON lines
 * (`{"event": ...}`) on stdout, and waits for "go" on stdin before processing when told to.
 *
 * Modes:
 * - `concurrent`: `calls` concurrent processWithIdempotency calls with one key; the processor inserts an effect row.
 * - `hang`:       claims the key, inserts an effect row, reports `claimed`, then never finishes (the test SIGKILLs it).
 * - `tx-hang-before-commit`: processInTransaction writes its effect row in the transaction, reports `written`, hangs.
 * - `tx-hang-after-commit`:  processInTransaction commits, an afterProcessing hook reports `committed`, then hangs.
 */
import { createInterface } from 'node:readline';
import pg from 'pg';
import { generateIdempotencyKey } from '../../src/idempotency/index.js';
import { type StorageVariant, testRedis, testService } from './idempotency-env.js';

export interface WorkerArgs {
  mode: 'concurrent' | 'hang' | 'tx-hang-before-commit' | 'tx-hang-after-commit';
  databaseUrl: string;
  keyPrefix: string;
  variant: StorageVariant;
  queue: string;
  keySuffix: string;
  calls?: number;
  waitForGo?: boolean;
  processMs?: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as WorkerArgs;
const emit = (event: string, data: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...data })}\n`);
const forever = () => new Promise<never>(() => setInterval(() => {}, 1 << 30));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const pool = new pg.Pool({ connectionString: args.databaseUrl, max: 4 });
const redis = testRedis();
const service = testService(
  { databaseUrl: args.databaseUrl, keyPrefix: args.keyPrefix, variant: args.variant, waitTimeout: '10s' },
  { pool, redis },
);
const key = generateIdempotencyKey(args.queue, '', args.keySuffix);
const effect = (client: { query(text: string, params: unknown[]): Promise<unknown> }) =>
  client.query('INSERT INTO effects (key_id, pid) VALUES ($1, $2)', [key.id, process.pid]);

await pool.query('SELECT 1'); // connected before reporting ready, so "go" starts everyone at once
if (args.waitForGo) {
  emit('ready');
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) if (line.trim() === 'go') break;
}

switch (args.mode) {
  case 'concurrent': {
    const results = await Promise.allSettled(
      Array.from({ length: args.calls ?? 1 }, () =>
        service.processWithIdempotency(key, async () => {
          await effect(pool);
          await sleep(args.processMs ?? 300);
          return { ranBy: process.pid };
        }),
      ),
    );
    emit('done', {
      results: results.map((r) => (r.status === 'fulfilled' ? r.value : { error: String(r.reason) })),
    });
    break;
  }
  case 'hang':
    await service.processWithIdempotency(key, async () => {
      await effect(pool);
      emit('claimed');
      return forever();
    });
    break;
  case 'tx-hang-before-commit':
    await service.processInTransaction(key, async (_trx, client) => {
      await effect(client);
      emit('written');
      return forever();
    });
    break;
  case 'tx-hang-after-commit':
    service.registerHook({
      afterProcessing: async () => {
        emit('committed');
        await forever();
      },
    });
    await service.processInTransaction(key, async (_trx, client) => {
      await effect(client);
      return { ranBy: process.pid };
    });
    break;
}
await service.close();
await pool.end();
redis.disconnect();
process.exit(0); // stdin (the "go" channel) would keep the process alive
