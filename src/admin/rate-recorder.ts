/** What the recorder samples: the relay counters of this process (`Metrics` has them). */
export interface RateCounters {
  outboxRetriedTotal: { get(): Promise<{ values: { value: number }[] }> };
  outboxFailedTotal: { get(): Promise<{ values: { value: number }[] }> };
}

export interface RateBucket {
  /** Bucket start, ms since the epoch. */
  at: number;
  retried: number;
  failed: number;
}

/** How often the counters are read; a bucket's figure is off by at most one sample's worth at its edges. */
export const RATE_SAMPLE_MS = 5000;

/**
 * Retries and deaths per bucket, for the dashboard's chart. The outbox keeps no time of a retry or a death, so these
 * come from this process's relay counters (`exactly_once_outbox_retried_total`, `_failed_total`), read every
 * `RATE_SAMPLE_MS` into a ring of `keep` buckets: they count what this relay did since it started, not other relays.
 * The overview says so in `rates.source`.
 *
 * @example const rates = new RateRecorder(metrics); rates.start(); rates.buckets(Date.now() - 15 * 60_000);
 */
export class RateRecorder {
  readonly #counters: RateCounters;
  readonly #bucketMs: number;
  readonly #keep: number;
  readonly #ring = new Map<number, { retried: number; failed: number }>();
  #last: { retried: number; failed: number } | undefined;
  #timer: NodeJS.Timeout | undefined;
  #sampling: Promise<void> | undefined;

  constructor(counters: RateCounters, options: { bucketMs?: number; keep?: number } = {}) {
    this.#counters = counters;
    this.#bucketMs = options.bucketMs ?? 60_000;
    this.#keep = options.keep ?? 16;
  }

  start(): void {
    if (this.#timer) return;
    void this.sample();
    this.#timer = setInterval(() => void this.sample(), RATE_SAMPLE_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Read the counters now and add what changed to the current bucket. Never rejects. */
  sample(): Promise<void> {
    this.#sampling ??= this.#read().finally(() => {
      this.#sampling = undefined;
    });
    return this.#sampling;
  }

  /** Buckets from `sinceMs` (rounded down to the grid) up to now, oldest first, empty ones included. */
  buckets(sinceMs: number, nowMs = Date.now()): RateBucket[] {
    const out: RateBucket[] = [];
    for (let at = this.#floor(sinceMs); at <= nowMs; at += this.#bucketMs) {
      const b = this.#ring.get(at);
      out.push({ at, retried: b?.retried ?? 0, failed: b?.failed ?? 0 });
    }
    return out;
  }

  async #read(): Promise<void> {
    try {
      const [retried, failed] = await Promise.all([
        total(this.#counters.outboxRetriedTotal),
        total(this.#counters.outboxFailedTotal),
      ]);
      const last = this.#last;
      this.#last = { retried, failed };
      // The first sample is the baseline: what happened before it has no time to put it at.
      if (!last) return;
      const at = this.#floor(Date.now());
      const bucket = this.#ring.get(at) ?? { retried: 0, failed: 0 };
      bucket.retried += Math.max(0, retried - last.retried);
      bucket.failed += Math.max(0, failed - last.failed);
      this.#ring.set(at, bucket);
      for (const key of this.#ring.keys()) {
        if (key <= at - this.#keep * this.#bucketMs) this.#ring.delete(key);
      }
    } catch {
      // A counter that cannot be read this time is read next time; the delta lands in a later bucket.
    }
  }

  #floor(ms: number): number {
    return Math.floor(ms / this.#bucketMs) * this.#bucketMs;
  }
}

async function total(counter: RateCounters['outboxRetriedTotal']): Promise<number> {
  const { values } = await counter.get();
  return values.reduce((sum, v) => sum + v.value, 0);
}
