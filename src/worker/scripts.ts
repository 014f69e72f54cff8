import { readFileSync } from 'node:fs';
import type { RedisClient } from '../redis.js';

/** The worker's scripts; `-<n>` in a file's name is its number of keys, and a name without it takes a key count first. */
const FILES = {
  pop: 'pop.lua',
  complete: 'complete-2.lua',
  move: 'move-2.lua',
  reap: 'reap.lua',
  streamRetry: 'stream-retry-1.lua',
  streamDead: 'stream-dead-2.lua',
  replayStream: 'replay-stream-2.lua',
} as const;

type ScriptName = keyof typeof FILES;
type Arg = string | number;
type Call = (...args: Arg[]) => Promise<unknown>;

export interface WorkerScripts {
  /** `[queue index, job, ...]` moved into `processing`, highest priority first. */
  pop(processing: string, queues: readonly string[], max: number): Promise<(string | number)[]>;
  complete(processing: string, completed: string, job: string, keep: number): Promise<number>;
  move(from: string, to: string, job: string, rewritten: string, end: 'front' | 'back'): Promise<number>;
  reap(
    keys: { processing: string; heartbeat: string; registry: string },
    queues: readonly { priority: string; key: string }[],
    workerId: string,
    limit: number,
    defaultIndex: number,
  ): Promise<number>;
  streamRetry(stream: string, group: string, entryId: string, fields: readonly string[]): Promise<string | null>;
  streamDead(stream: string, deadLetter: string, group: string, entryId: string, entry: string): Promise<number>;
  replayStream(deadLetter: string, stream: string, entry: string, fields: readonly string[]): Promise<number>;
}

const SOURCES = new Map(
  Object.entries(FILES).map(([name, file]) => [
    name,
    {
      lua: readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8'),
      keys: /-(\d+)\.lua$/.exec(file)?.[1],
    },
  ]),
);

/**
 * Define the scripts on `redis` once (ioredis `defineCommand`: EVALSHA, EVAL after a restart or SCRIPT FLUSH), the
 * loader the publishers and the idempotency store use too.
 *
 * @example const scripts = workerScripts(redis); await scripts.pop(processing, queues, 10);
 */
export function workerScripts(redis: RedisClient): WorkerScripts {
  for (const [name, { lua, keys }] of SOURCES) {
    const command = commandOf(name as ScriptName);
    if (!(command in redis)) {
      redis.defineCommand(command, keys === undefined ? { lua } : { lua, numberOfKeys: Number(keys) });
    }
  }
  const client = redis as unknown as Record<string, Call>;
  const run = (name: ScriptName, ...args: Arg[]) => (client[commandOf(name)] as Call).call(redis, ...args);
  return {
    pop: async (processing, queues, max) =>
      (await run('pop', 1 + queues.length, processing, ...queues, max)) as (string | number)[],
    complete: async (processing, completed, job, keep) =>
      (await run('complete', processing, completed, job, keep)) as number,
    move: async (from, to, job, rewritten, end) => (await run('move', from, to, job, rewritten, end)) as number,
    reap: async (keys, queues, workerId, limit, defaultIndex) =>
      (await run(
        'reap',
        3 + queues.length,
        keys.processing,
        keys.heartbeat,
        keys.registry,
        ...queues.map((q) => q.key),
        workerId,
        limit,
        defaultIndex + 1,
        ...queues.map((q) => q.priority),
      )) as number,
    streamRetry: async (stream, group, entryId, fields) =>
      (await run('streamRetry', stream, group, entryId, ...fields)) as string | null,
    streamDead: async (stream, deadLetter, group, entryId, entry) =>
      (await run('streamDead', stream, deadLetter, group, entryId, entry)) as number,
    replayStream: async (deadLetter, stream, entry, fields) =>
      (await run('replayStream', deadLetter, stream, entry, ...fields)) as number,
  };
}

function commandOf(name: ScriptName): string {
  return `eoWorker_${name}`;
}
