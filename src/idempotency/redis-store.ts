import { mastersOf, type RedisClient } from '../redis.js';
import type { KeyRef } from './keys.js';
import type { PatternPart } from './redis-codec.js';
import {
  decodeRecord,
  encodePayload,
  expiresAtOf,
  fingerprintHex,
  globLiteral,
  redisPart,
  requirePatternParts,
} from './redis-codec.js';
import { defineScripts, type RunScript, type ScriptArg, type ScriptName } from './redis-scripts.js';
import type {
  ClaimOutcome,
  ClaimRequest,
  IdempotencyRecord,
  IdempotencyStore,
  StatsDelta,
  StoredStats,
} from './types.js';

export interface RedisStoreOptions {
  /** Prepended to every key (`idempotency.key_prefix`). */
  keyPrefix: string;
  /** Record key when `useHashes` is false; `{queue}`, `{tenant}`, `{key}` are replaced by the escaped parts. */
  keyPattern: string;
  /** Hash of one queue+tenant's records when `useHashes` is true. */
  hashKeyPattern: string;
  useHashes: boolean;
  compression: boolean;
}

type Part = PatternPart;

/**
 * Redis as the store. Every decision is one Lua script on one key (the record's key, or its queue+tenant hash), so it
 * is atomic and runs unchanged on Redis Cluster (whatever the key patterns: no script touches two keys); counts and
 * cleanup SCAN every master of a cluster. With `useHashes`, fields expire by their header (swept by `cleanup`)
 * unless the server has per-field expiry (HPEXPIRE, Redis >= 7.4), which is used when present.
 *
 * G4: an in-progress record is governed by its lease alone. The claim and every renewal keep its expiry (the header's,
 * and the key's PX or the field's HPEXPIRE) at or after its lease end, so neither Redis nor `cleanup` drops it while a
 * processor that runs longer than the key's TTL keeps renewing, and a duplicate cannot take it over (see prelude.lua).
 */
export class RedisStore implements IdempotencyStore {
  readonly kind = 'redis' as const;
  private hexpire: Promise<boolean> | undefined;
  private readonly statsPrefix: string;
  private readonly run: RunScript;

  constructor(
    private readonly redis: RedisClient,
    private readonly options: RedisStoreOptions,
  ) {
    const base = 'exactly_once.idempotency.storage.redis';
    if (options.useHashes) {
      requirePatternParts(options.hashKeyPattern, ['queue', 'tenant'], `${base}.hash_key_pattern`);
    } else {
      requirePatternParts(options.keyPattern, ['queue', 'tenant', 'key'], `${base}.key_pattern`);
    }
    this.statsPrefix = `${options.keyPrefix}eo-stats:`;
    this.run = defineScripts(redis);
  }

  async claim(ref: KeyRef, request: ClaimRequest): Promise<ClaimOutcome> {
    const raw = await this.script('claim', ref, [
      request.token,
      request.leaseMs,
      request.ttlMs,
      fingerprintHex(request.fingerprint),
    ]);
    if (raw === null) return { kind: 'claimed' };
    const record = this.decode(ref, raw);
    return record.status === 'completed' ? { kind: 'completed', record } : { kind: 'in_progress', record };
  }

  async renew(ref: KeyRef, token: string, leaseMs: number): Promise<boolean> {
    return (await this.script('renew', ref, [token, leaseMs])) === 1;
  }

  async complete(ref: KeyRef, token: string, resultJson: string, ttlMs: number): Promise<boolean> {
    const { encoding, payload } = encodePayload(resultJson, this.options.compression);
    return (await this.script('complete', ref, [token, ttlMs, encoding, payload])) === 1;
  }

  async release(ref: KeyRef, token: string): Promise<boolean> {
    return (await this.script('release', ref, [token])) === 1;
  }

  async get(ref: KeyRef): Promise<IdempotencyRecord | undefined> {
    const raw = await this.script('get', ref, []);
    return raw === null ? undefined : this.decode(ref, raw);
  }

  async create(ref: KeyRef, valueJson: string, ttlMs: number): Promise<IdempotencyRecord | undefined> {
    const { encoding, payload } = encodePayload(valueJson, this.options.compression);
    const raw = await this.script('create', ref, [ttlMs, encoding, payload]);
    return raw === null ? undefined : this.decode(ref, raw);
  }

  async delete(ref: KeyRef): Promise<boolean> {
    return (await this.script('delete', ref, [])) === 1;
  }

  /**
   * Plain keys carry a PX expiry, so Redis removes them itself. Hash fields (without HPEXPIRE) are swept here:
   * HSCAN a batch, then one script deletes those fields that are still expired (and not under a live lease, G4).
   */
  async cleanup(batchSize: number): Promise<number> {
    if (!this.options.useHashes) return 0;
    const now = await this.serverTime();
    let removed = 0;
    for await (const hash of this.scanKeys(this.glob(this.options.hashKeyPattern, {}))) {
      let cursor = '0';
      do {
        const [next, flat] = await this.redis.hscanBuffer(hash, cursor, 'COUNT', batchSize);
        cursor = next.toString();
        const expired: Buffer[] = [];
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const exp = expiresAtOf(flat[i + 1] as Buffer);
          if (exp !== undefined && exp <= now) expired.push(flat[i] as Buffer);
        }
        if (expired.length > 0) {
          removed += Number(await this.run('sweep', hash, ['', '0', ...expired]));
        }
      } while (cursor !== '0');
    }
    return removed;
  }

  async countKeys(queueName?: string, tenantId?: string): Promise<number> {
    const parts = { queue: queueName, tenant: tenantId };
    let n = 0;
    if (!this.options.useHashes) {
      for await (const _ of this.scanKeys(this.glob(this.options.keyPattern, parts))) n++;
      return n;
    }
    const now = await this.serverTime();
    for await (const hash of this.scanKeys(this.glob(this.options.hashKeyPattern, parts))) {
      let cursor = '0';
      do {
        const [next, flat] = await this.redis.hscanBuffer(hash, cursor, 'COUNT', 500);
        cursor = next.toString();
        for (let i = 1; i < flat.length; i += 2) {
          const exp = expiresAtOf(flat[i] as Buffer);
          if (exp !== undefined && exp > now) n++;
        }
      } while (cursor !== '0');
    }
    return n;
  }

  async addStats(deltas: readonly StatsDelta[]): Promise<void> {
    if (deltas.length === 0) return;
    // One pipeline per stats key: a cluster client refuses a pipeline whose keys live on different nodes, and queues'
    // keys spread over the slots. A single server gets the same few round trips, in parallel.
    const byKey = new Map<string, StatsDelta[]>();
    for (const d of deltas) {
      const key = this.statsPrefix + redisPart(d.queueName);
      byKey.set(key, [...(byKey.get(key) ?? []), d]);
    }
    const now = Date.now();
    const results = await Promise.all(
      [...byKey].map(([key, list]) => {
        const pipeline = this.redis.pipeline();
        for (const d of list) {
          const t = redisPart(d.tenantId);
          pipeline.hincrby(key, `${t}|r`, d.requests);
          pipeline.hincrby(key, `${t}|d`, d.duplicates);
          pipeline.hset(key, `${t}|u`, now);
        }
        return pipeline.exec();
      }),
    );
    const failed = results.flatMap((r) => r ?? []).find(([err]) => err);
    if (failed) throw failed[0];
  }

  async readStats(queueName: string, tenantId?: string): Promise<StoredStats> {
    const all = await this.redis.hgetall(this.statsPrefix + redisPart(queueName));
    const wanted = tenantId === undefined ? undefined : redisPart(tenantId);
    let totalRequests = 0;
    let duplicatesAvoided = 0;
    let updated = 0;
    for (const [field, value] of Object.entries(all)) {
      const cut = field.lastIndexOf('|');
      if (wanted !== undefined && field.slice(0, cut) !== wanted) continue;
      const kind = field.slice(cut + 1);
      if (kind === 'r') totalRequests += Number(value);
      else if (kind === 'd') duplicatesAvoided += Number(value);
      else if (kind === 'u') updated = Math.max(updated, Number(value));
    }
    return { totalRequests, duplicatesAvoided, lastUpdated: updated ? new Date(updated) : null };
  }

  /** The Redis client belongs to the service. */
  async close(): Promise<void> {}

  private async script(name: ScriptName, ref: KeyRef, args: readonly ScriptArg[]): Promise<Buffer | number | null> {
    const hexpire = this.options.useHashes && (await this.hasHexpire());
    const field = this.options.useHashes ? ref.keyId : '';
    const key = this.options.useHashes
      ? this.key(this.options.hashKeyPattern, ref)
      : this.key(this.options.keyPattern, ref);
    return (await this.run(name, key, [field, hexpire ? '1' : '0', ...args])) as Buffer | number | null;
  }

  private decode(ref: KeyRef, raw: Buffer | number | null): IdempotencyRecord {
    const record = Buffer.isBuffer(raw) ? decodeRecord(ref, raw) : undefined;
    if (!record) throw new Error(`unreadable idempotency record for "${ref.keyId}"`);
    return record;
  }

  private key(pattern: string, ref: KeyRef): string {
    return (
      this.options.keyPrefix +
      pattern.replace(/\{(queue|tenant|key)\}/g, (_, part: Part) =>
        redisPart(part === 'queue' ? ref.queueName : part === 'tenant' ? ref.tenantId : ref.keyId),
      )
    );
  }

  /** A SCAN pattern: literal text glob-escaped, given parts escaped (they contain no glob specials), others `*`. */
  private glob(pattern: string, parts: Partial<Record<Part, string | undefined>>): string {
    const pieces = pattern.split(/(\{(?:queue|tenant|key)\})/);
    return (
      globLiteral(this.options.keyPrefix) +
      pieces
        .map((piece) => {
          const m = /^\{(queue|tenant|key)\}$/.exec(piece);
          if (!m) return globLiteral(piece);
          const value = parts[m[1] as Part];
          return value === undefined ? '*' : redisPart(value);
        })
        .join('')
    );
  }

  /** Every matching key, on every master of a cluster (a cluster client would SCAN one node only). */
  private async *scanKeys(match: string): AsyncGenerator<string> {
    for (const node of mastersOf(this.redis)) {
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', match, 'COUNT', 1000);
        cursor = next;
        yield* keys;
      } while (cursor !== '0');
    }
  }

  private async serverTime(): Promise<number> {
    const [s, us] = await this.redis.time();
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  }

  /** Per-field expiry exists from Redis 7.4; COMMAND INFO answers nil for a command the server does not know. */
  private hasHexpire(): Promise<boolean> {
    this.hexpire ??= (this.redis.call('COMMAND', 'INFO', 'HPEXPIRE') as Promise<unknown[]>).then(
      (info) => Array.isArray(info) && info[0] != null,
      () => {
        this.hexpire = undefined; // ask again next time rather than remember a failed probe
        return false;
      },
    );
    return this.hexpire;
  }
}
