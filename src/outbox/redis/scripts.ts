import { readFileSync } from 'node:fs';
import type { RedisClient } from '../../redis.js';

/** A Lua file of ./lua/, read once per process. */
export function outboxLua(file: string): string {
  return readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
}

type ScriptCall = (numKeys: number, ...args: (string | number)[]) => Promise<unknown>;

/** The relay's and the inspector's scripts, defined on a client once (ioredis `defineCommand`: EVALSHA, EVAL on NOSCRIPT). */
export interface OutboxScripts {
  claim: ScriptCall;
  move: ScriptCall;
  replay: ScriptCall;
  cleanup: ScriptCall;
  read: ScriptCall;
}

const COMMANDS = {
  eoOutboxClaim: 'claim-4.lua',
  eoOutboxMove: 'move.lua',
  eoOutboxReplay: 'replay-5.lua',
  eoOutboxCleanup: 'cleanup-2.lua',
  eoOutboxRead: 'read-events.lua',
} as const;

export function outboxScripts(redis: RedisClient): OutboxScripts {
  const client = redis as unknown as Record<string, ScriptCall>;
  for (const [command, file] of Object.entries(COMMANDS)) {
    if (!(command in redis)) redis.defineCommand(command, { lua: outboxLua(file) });
  }
  const bind =
    (command: keyof typeof COMMANDS): ScriptCall =>
    (numKeys, ...args) =>
      (client[command] as ScriptCall).call(redis, numKeys, ...args);
  return {
    claim: bind('eoOutboxClaim'),
    move: bind('eoOutboxMove'),
    replay: bind('eoOutboxReplay'),
    cleanup: bind('eoOutboxCleanup'),
    read: bind('eoOutboxRead'),
  };
}
