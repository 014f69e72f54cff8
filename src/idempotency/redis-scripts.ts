import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { RedisClient } from '../redis.js';

const PRELUDE = readLua('prelude.lua');

/**
 * One Lua script: the shared prelude plus the operation, loaded from disk once per process and run by EVALSHA
 * (EVAL only when the server has not seen it yet, e.g. after a restart or SCRIPT FLUSH).
 */
export class LuaScript {
  readonly source: string;
  readonly sha: string;

  constructor(file: string) {
    this.source = `${PRELUDE}\n${readLua(file)}`;
    this.sha = createHash('sha1').update(this.source).digest('hex');
  }

  async run(redis: RedisClient, key: string, args: readonly (string | Buffer | number)[]): Promise<unknown> {
    try {
      return await redis.callBuffer('EVALSHA', this.sha, 1, key, ...args);
    } catch (err) {
      // Redis reports a missing script only in the message text; there is no other signal.
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return redis.callBuffer('EVAL', this.source, 1, key, ...args);
    }
  }
}

export const scripts = {
  claim: new LuaScript('claim-1.lua'),
  renew: new LuaScript('renew-1.lua'),
  complete: new LuaScript('complete-1.lua'),
  release: new LuaScript('release-1.lua'),
  get: new LuaScript('get-1.lua'),
  create: new LuaScript('create-1.lua'),
  delete: new LuaScript('delete-1.lua'),
  sweep: new LuaScript('sweep-1.lua'),
};

function readLua(file: string): string {
  return readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
}
