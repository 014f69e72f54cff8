import { readFileSync } from 'node:fs';
import type { RedisClient } from '../redis.js';

/** The store's scripts; the number in a file's name is its number of keys (one: a record's key or its hash). */
const FILES = {
  claim: 'claim-1.lua',
  renew: 'renew-1.lua',
  complete: 'complete-1.lua',
  release: 'release-1.lua',
  get: 'get-1.lua',
  create: 'create-1.lua',
  delete: 'delete-1.lua',
  sweep: 'sweep-1.lua',
} as const;

export type ScriptName = keyof typeof FILES;
export type ScriptArg = string | number | Buffer;
/** Run one script on one key; bulk replies come back as Buffers (records are binary), integers as numbers. */
export type RunScript = (name: ScriptName, key: string, args: readonly ScriptArg[]) => Promise<unknown>;

type Call = (key: string, ...args: ScriptArg[]) => Promise<unknown>;

const PRELUDE = readLua('prelude.lua');
const SOURCES = new Map(Object.entries(FILES).map(([name, file]) => [name, `${PRELUDE}\n${readLua(file)}`]));

/**
 * Define the store's scripts on `redis` (once per client) as ioredis commands, the loader the publishers use too:
 * ioredis runs EVALSHA and falls back to EVAL when the server has not seen a script yet (after a restart or SCRIPT
 * FLUSH), on a single server and on every node of a cluster alike.
 *
 * @example const run = defineScripts(redis); await run('get', key, ['', '0']);
 */
export function defineScripts(redis: RedisClient): RunScript {
  for (const [name, lua] of SOURCES) {
    if (!(commandOf(name) in redis)) redis.defineCommand(commandOf(name), { numberOfKeys: 1, lua });
  }
  const client = redis as unknown as Record<string, Call>;
  return (name, key, args) => (client[`${commandOf(name)}Buffer`] as Call).call(redis, key, ...args);
}

function commandOf(name: string): string {
  return `eoIdempotency_${name}`;
}

function readLua(file: string): string {
  return readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
}
