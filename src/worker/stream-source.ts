import type { Redis } from 'ioredis';
import type { RedisClient } from '../redis.js';
import { deadEntry, parseJob } from './job.js';
import type { WorkerKeys } from './keys.js';
import type { WorkerScripts } from './scripts.js';
import type { Delivery, JobSource } from './source.js';

export interface StreamSourceOptions {
  redis: RedisClient;
  /** A connection of this source's own: XREADGROUP ... BLOCK holds it. */
  blocking: Redis | RedisClient;
  scripts: WorkerScripts;
  keys: WorkerKeys;
  stream: string;
  group: string;
  /** The consumer name: the worker id. */
  consumer: string;
  claimIdleMs: number;
  blockTimeoutMs: number;
}

type Entry = [string, string[]];
/** Job fields that are numbers in the job JSON; a stream carries every value as a string. */
const NUMBERS = new Set(['filesize', 'retries']);
/** Job fields that carry JSON (the event's payload and headers). */
const JSON_FIELDS = new Set(['payload', 'headers']);

/**
 * A stream's consumer group: new entries with `XREADGROUP`, a dead consumer's pending entries taken over with
 * `XAUTOCLAIM` once idle for `claim_idle`, acknowledgement (`XACK`) only after the effect. A retry is a copy of the
 * entry at the stream's end (acknowledging the original in the same script); a dead entry goes to the worker's
 * dead-letter list, with the stream as its origin.
 */
export class StreamSource implements JobSource {
  readonly kind = 'stream';
  readonly #o: StreamSourceOptions;
  #claimCursor = '0-0';
  #nextClaimAt = 0;

  constructor(options: StreamSourceOptions) {
    this.#o = options;
  }

  get describes(): Record<string, unknown> {
    return { stream: this.#o.stream, group: this.#o.group };
  }

  /** The group, reading the stream from its start; an existing group is kept as it is. */
  async open(): Promise<void> {
    try {
      await this.#o.redis.call('XGROUP', 'CREATE', this.#o.stream, this.#o.group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).startsWith('BUSYGROUP')) throw err;
    }
  }

  async take(max: number): Promise<Delivery[]> {
    try {
      return await this.#take(max);
    } catch (err) {
      // The stream (and its group) was deleted under us: create the group again, then let the worker retry.
      if (String((err as Error).message).startsWith('NOGROUP')) await this.open();
      throw err;
    }
  }

  async #take(max: number): Promise<Delivery[]> {
    const { stream, group, consumer } = this.#o;
    // Abandoned entries first, looked for every half claim_idle (and page by page while a scan is under way).
    if (this.#claimCursor !== '0-0' || Date.now() >= this.#nextClaimAt) {
      const [next, claimed] = (await this.#o.redis.call(
        'XAUTOCLAIM',
        stream,
        group,
        consumer,
        this.#o.claimIdleMs,
        this.#claimCursor,
        'COUNT',
        max,
      )) as [string, Entry[]];
      this.#claimCursor = next;
      if (next === '0-0') this.#nextClaimAt = Date.now() + this.#o.claimIdleMs / 2;
      const live = claimed.filter((e) => Array.isArray(e?.[1]));
      if (live.length > 0) return live.map((e) => this.#delivery(e));
    }
    const read = (await this.#o.blocking.call(
      'XREADGROUP',
      'GROUP',
      group,
      consumer,
      'COUNT',
      max,
      'BLOCK',
      this.#o.blockTimeoutMs,
      'STREAMS',
      stream,
      '>',
    )) as [string, Entry[]][] | null;
    return (read?.[0]?.[1] ?? []).map((e) => this.#delivery(e));
  }

  async complete(delivery: Delivery): Promise<void> {
    await this.#o.redis.call('XACK', this.#o.stream, this.#o.group, delivery.entryId as string);
  }

  async retry(delivery: Delivery, retries: number): Promise<void> {
    const fields = Object.entries(JSON.parse(delivery.raw) as Record<string, string>).flatMap(([k, v]) =>
      k === 'retries' ? [k, String(retries)] : [k, v],
    );
    if (!fields.includes('retries')) fields.push('retries', String(retries));
    await this.#o.scripts.streamRetry(this.#o.stream, this.#o.group, delivery.entryId as string, fields);
  }

  async dead(delivery: Delivery, error: string, retries: number): Promise<void> {
    const job = 'job' in delivery.parsed ? JSON.stringify(delivery.parsed.job) : delivery.raw;
    const entry = deadEntry(job, { error, from: this.#o.stream, kind: 'stream', retries });
    await this.#o.scripts.streamDead(
      this.#o.stream,
      this.#o.keys.deadLetter,
      this.#o.group,
      delivery.entryId as string,
      entry,
    );
  }

  /** A consumer that holds nothing is removed from the group; one that still holds entries stays for XAUTOCLAIM. */
  async close(): Promise<void> {
    const pending = (await this.#o.redis.call(
      'XPENDING',
      this.#o.stream,
      this.#o.group,
      '-',
      '+',
      1,
      this.#o.consumer,
    )) as unknown[];
    if (pending.length === 0)
      await this.#o.redis.call('XGROUP', 'DELCONSUMER', this.#o.stream, this.#o.group, this.#o.consumer);
  }

  #delivery([entryId, flat]: Entry): Delivery {
    const fields: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
    return { raw: JSON.stringify(fields), from: this.#o.stream, entryId, parsed: parseJob(jobText(fields)) };
  }
}

/** The job JSON of an entry's fields: numbers and JSON values restored as the list publisher writes them. */
function jobText(fields: Record<string, string>): string {
  const parts = Object.entries(fields).map(([k, v]) => {
    const literal = (NUMBERS.has(k) && /^-?\d+$/.test(v)) || (JSON_FIELDS.has(k) && isJson(v)) ? v : JSON.stringify(v);
    return `${JSON.stringify(k)}:${literal}`;
  });
  return `{${parts.join(',')}}`;
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
