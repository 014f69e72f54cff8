import type { KeyRef } from './keys.js';
import type {
  ClaimOutcome,
  ClaimRequest,
  IdempotencyRecord,
  IdempotencyStore,
  StatsDelta,
  StoredStats,
} from './types.js';

export type EvictionPolicy = 'fifo' | 'lru';

export interface MemoryStoreOptions {
  /** @defaultValue 10000 */
  maxKeys: number;
  /** @defaultValue "fifo" */
  evictionPolicy: EvictionPolicy;
}

interface Entry {
  record: IdempotencyRecord;
  token: string | null;
}

/**
 * A single-process store for tests and development. A `Map` keeps insertion order, which is the FIFO order;
 * for LRU every read moves the entry to the end, so the two policies evict different keys once a key is re-read.
 * In-progress claims are never evicted (that would let a duplicate run); expired records go first.
 *
 * G4: an in-progress entry is governed by its lease alone: its expiry is kept at or after its lease end (the claim and
 * every renewal push it out), and claim, cleanup and eviction end it only once its lease lapsed. Otherwise a processor
 * that runs longer than the key's TTL, renewing all along, would lose its key to a duplicate (a second run) or cleanup.
 */
export class MemoryStore implements IdempotencyStore {
  readonly kind = 'memory' as const;
  private readonly entries = new Map<string, Entry>();
  private readonly stats = new Map<string, { requests: number; duplicates: number; updated: Date }>();

  constructor(private readonly options: MemoryStoreOptions) {}

  async claim(ref: KeyRef, request: ClaimRequest): Promise<ClaimOutcome> {
    const now = Date.now();
    const entry = this.live(ref, now);
    if (entry) {
      const { record } = entry;
      if (record.status === 'completed') return { kind: 'completed', record };
      // G4: only a lapsed lease lets the key be taken over, never its TTL.
      if ((record.leaseExpiresAt?.getTime() ?? 0) > now) return { kind: 'in_progress', record };
    }
    this.put(ref, {
      token: request.token,
      record: {
        ...ref,
        status: 'in_progress',
        result: null,
        fingerprint: request.fingerprint,
        createdAt: new Date(now),
        // G4: the record lasts at least as long as its lease, even for a key whose TTL is shorter.
        expiresAt: new Date(now + Math.max(request.ttlMs, request.leaseMs)),
        leaseExpiresAt: new Date(now + request.leaseMs),
      },
    });
    return { kind: 'claimed' };
  }

  async renew(ref: KeyRef, token: string, leaseMs: number): Promise<boolean> {
    const entry = this.held(ref, token);
    if (!entry) return false;
    const leaseEnd = Date.now() + leaseMs;
    // G4: the expiry moves with the lease (never back), so the record outlives its TTL while the processor runs.
    const expiresAt = new Date(Math.max(entry.record.expiresAt.getTime(), leaseEnd));
    entry.record = { ...entry.record, leaseExpiresAt: new Date(leaseEnd), expiresAt };
    return true;
  }

  async complete(ref: KeyRef, token: string, resultJson: string, ttlMs: number): Promise<boolean> {
    const entry = this.held(ref, token);
    if (!entry) return false;
    const now = Date.now();
    entry.token = null;
    entry.record = {
      ...entry.record,
      status: 'completed',
      result: JSON.parse(resultJson),
      expiresAt: new Date(now + ttlMs),
      leaseExpiresAt: null,
    };
    return true;
  }

  async release(ref: KeyRef, token: string): Promise<boolean> {
    if (!this.held(ref, token)) return false;
    return this.entries.delete(mapKey(ref));
  }

  async get(ref: KeyRef): Promise<IdempotencyRecord | undefined> {
    return this.live(ref, Date.now())?.record;
  }

  async create(ref: KeyRef, valueJson: string, ttlMs: number): Promise<IdempotencyRecord | undefined> {
    const now = Date.now();
    if (this.live(ref, now)) return undefined;
    const record: IdempotencyRecord = {
      ...ref,
      status: 'completed',
      result: JSON.parse(valueJson),
      fingerprint: null,
      createdAt: new Date(now),
      expiresAt: new Date(now + ttlMs),
      leaseExpiresAt: null,
    };
    this.put(ref, { record, token: null });
    return record;
  }

  async delete(ref: KeyRef): Promise<boolean> {
    const k = mapKey(ref);
    const entry = this.entries.get(k);
    this.entries.delete(k);
    return entry !== undefined && !isOver(entry.record, Date.now());
  }

  async cleanup(batchSize: number): Promise<number> {
    const now = Date.now();
    let removed = 0;
    let inBatch = 0;
    for (const [k, entry] of this.entries) {
      if (!isOver(entry.record, now)) continue;
      this.entries.delete(k);
      removed++;
      // Yield between batches so a large sweep does not block the event loop.
      if (++inBatch >= batchSize) {
        inBatch = 0;
        await new Promise((r) => setImmediate(r));
      }
    }
    return removed;
  }

  async countKeys(queueName?: string, tenantId?: string): Promise<number> {
    const now = Date.now();
    let n = 0;
    for (const { record } of this.entries.values()) {
      if (isOver(record, now)) continue;
      if (queueName !== undefined && record.queueName !== queueName) continue;
      if (tenantId !== undefined && record.tenantId !== tenantId) continue;
      n++;
    }
    return n;
  }

  async addStats(deltas: readonly StatsDelta[]): Promise<void> {
    for (const d of deltas) {
      const k = JSON.stringify([d.queueName, d.tenantId]);
      const s = this.stats.get(k) ?? { requests: 0, duplicates: 0, updated: new Date() };
      s.requests += d.requests;
      s.duplicates += d.duplicates;
      s.updated = new Date();
      this.stats.set(k, s);
    }
  }

  async readStats(queueName: string, tenantId?: string): Promise<StoredStats> {
    let totalRequests = 0;
    let duplicatesAvoided = 0;
    let lastUpdated: Date | null = null;
    for (const [k, s] of this.stats) {
      const [q, t] = JSON.parse(k) as [string, string];
      if (q !== queueName || (tenantId !== undefined && t !== tenantId)) continue;
      totalRequests += s.requests;
      duplicatesAvoided += s.duplicates;
      if (!lastUpdated || s.updated > lastUpdated) lastUpdated = s.updated;
    }
    return { totalRequests, duplicatesAvoided, lastUpdated };
  }

  async close(): Promise<void> {}

  /** The live entry; an LRU read makes it the most recently used. */
  private live(ref: KeyRef, now: number): Entry | undefined {
    const k = mapKey(ref);
    const entry = this.entries.get(k);
    if (!entry) return undefined;
    // Expired entries stay until cleanup removes them (or eviction, in policy order).
    if (isOver(entry.record, now)) return undefined;
    if (this.options.evictionPolicy === 'lru') {
      this.entries.delete(k);
      this.entries.set(k, entry);
    }
    return entry;
  }

  private held(ref: KeyRef, token: string): Entry | undefined {
    const entry = this.entries.get(mapKey(ref));
    return entry && entry.token === token && entry.record.status === 'in_progress' ? entry : undefined;
  }

  private put(ref: KeyRef, entry: Entry): void {
    const k = mapKey(ref);
    this.entries.delete(k);
    this.entries.set(k, entry);
    if (this.entries.size > this.options.maxKeys) this.evict();
  }

  private evict(): void {
    const now = Date.now();
    for (const [k, entry] of this.entries) {
      if (entry.record.status === 'completed' || isOver(entry.record, now)) {
        this.entries.delete(k);
        return;
      }
    }
  }
}

/**
 * G4: a record is over when its TTL ran out and, while in progress, its lease too. The expiry alone would do given the
 * invariant on the class; checking the lease as well states the rule where it is applied.
 */
function isOver(record: IdempotencyRecord, now: number): boolean {
  if (record.expiresAt.getTime() > now) return false;
  return record.status === 'completed' || (record.leaseExpiresAt?.getTime() ?? 0) <= now;
}

function mapKey(ref: KeyRef): string {
  return JSON.stringify([ref.queueName, ref.tenantId, ref.keyId]);
}
