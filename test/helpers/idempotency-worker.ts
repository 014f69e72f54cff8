/**
 * A worker process for the idempotency crash and concurrency tests. Reads one JSON argument, prints JSON lines
 * (`{"event": ...}`) on stdout, and waits for "go" on stdin before processing when told to.
 *
 * Modes:
 * - `concurrent`: `calls` concurrent processWithIdempotency calls with one key; the processor inserts an effect row.
 * - `hang`:       claims the key, inserts an effect row, reports `claimed`, then never finishes (the test SIGKILLs it).
 * - `tx-hang-before-commit`: processInTransaction writes its effect row in the transaction, reports `written`, hangs.
 * - `tx-hang-after-commit`:  processInTransaction commits, an afterProcessing hook reports `committed`, then hangs.
 * - `block-past-lease`: claims the key, reports `claimed`, then blocks its event loop (a busy loop, so no lease renewal
 *   can fire) until `releaseFile` exists; then, with `honourSignal`, yields once and stops if its signal fired; else
 *   writes its effect row and returns. Reports `outcome` with what the call ended with.
 */
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { generateIdempotencyKey } from '../../src/idempotency/index.js';
import { type StorageVariant, testRedis, testService } from './idempotency-env.js';

export interface WorkerArgs {
  mode: 'concurrent' | 'hang' | 'tx-hang-before-commit' | 'tx-hang-after-commit' | 'block-past-lease';
  databaseUrl: string;
  keyPrefix: string;
  variant: StorageVariant;
  queue: string;
  keySuffix: string;
  calls?: number;
  waitForGo?: boolean;
  processMs?: number;
  releaseFile?: string;
  honourSignal?: boolean;
  /** The idempotency lease; the test default (1s) when absent. */
  lease?: string;
}

const args = JSON.parse(process.argv[2] ?? '{}') as WorkerArgs;
const emit = (event: string, data: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...data })}\n`);
const forever = () => new Promise<never>(() => setInterval(() => {}, 1 << 30));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const pool = new pg.Pool({ connectionString: args.databaseUrl, max: 4 });
const redis = testRedis();
const service = testService(
  {
    databaseUrl: args.databaseUrl,
    keyPrefix: args.keyPrefix,
    variant: args.variant,
    waitTimeout: '10s',
    lease: args.lease,
  },
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
    // The dedup counters are written once a second and on close (stats-buffer.ts): closed first, so the test reads
    // every process's counts as soon as all say done.
    await service.close();
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
  case 'block-past-lease': {
    let signal: AbortSignal | undefined;
    try {
      const result = await service.processWithIdempotency(key, async (context) => {
        signal = context.signal;
        emit('claimed');
        const deadline = Date.now() + 30_000;
        while (!existsSync(args.releaseFile as string) && Date.now() < deadline) {
          // busy: the event loop is blocked, as a CPU-bound processor (or a long GC pause) would block it
        }
        if (args.honourSignal) {
          await sleep(1); // timers that came due while blocked (the lease check) run before this one
          context.signal.throwIfAborted();
        }
        await effect(pool);
        return { ranBy: process.pid };
      });
      emit('outcome', { ok: true, result, aborted: signal?.aborted ?? null });
    } catch (err) {
      const e = err as { name?: string; code?: string; cause?: { name?: string; code?: string } };
      emit('outcome', {
        ok: false,
        name: e.name,
        code: e.code,
        causeCode: e.cause?.code ?? null,
        aborted: signal?.aborted ?? null,
      });
    }
    break;
  }
}
await service.close();
await pool.end();
redis.disconnect();
process.exit(0); // stdin (the "go" channel) would keep the process alive
