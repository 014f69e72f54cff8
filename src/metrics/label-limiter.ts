/** The label value distinct values collapse into once a label has reached `cardinality_limit`. */
export const OTHER_LABEL_VALUE = 'other';

/**
 * Caps the distinct values of user-controlled labels (queue, tenant). Every series costs Prometheus memory for as
 * long as it is retained, so an unbounded tenant id must not mint a series per tenant: the first `limit` values
 * seen keep their own series, the rest share `other`. Per label name, per process.
 *
 * @example const q = limiter.value('queue', 'orders'); // 'orders', or 'other' past the limit
 */
export class LabelLimiter {
  readonly #limit: number;
  readonly #seen = new Map<string, Set<string>>();

  constructor(limit: number) {
    this.#limit = limit;
  }

  value(label: string, value: string): string {
    let seen = this.#seen.get(label);
    if (!seen) {
      seen = new Set();
      this.#seen.set(label, seen);
    }
    if (seen.has(value)) return value;
    if (seen.size >= this.#limit) return OTHER_LABEL_VALUE;
    seen.add(value);
    return value;
  }
}
