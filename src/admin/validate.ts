import { parseDuration } from '../config/duration.js';
import { InvalidParameterError } from '../errors.js';
import { jsonValueProblem, textProblem } from '../idempotency/json-value.js';

/** Longest queue / tenant / key accepted, as the idempotency stores do. */
export const MAX_PART_LENGTH = 512;
/** Longest TTL accepted for a hand-made idempotency key. */
export const MAX_TTL_MS = 366 * 24 * 3_600_000;

type Source = 'query' | 'body';

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/i;

/**
 * Reads and checks the fields of one query string or JSON body. Every failure is an `InvalidParameterError` naming
 * the field as the client spelled it; unknown fields are refused too, so a typo (`tenant_id=` on a query) is an
 * error instead of a silently ignored filter.
 *
 * @example const q = new Fields(request.query, 'query', ['queue', 'tenant']); const queue = q.requiredString('queue');
 */
export class Fields {
  readonly #values: Record<string, unknown>;
  readonly #source: Source;

  constructor(input: unknown, source: Source, allowed: readonly string[]) {
    this.#source = source;
    if (input === undefined || input === null) {
      if (source === 'body') throw new InvalidParameterError('body', 'must be a JSON object');
      this.#values = {};
      return;
    }
    if (typeof input !== 'object' || Array.isArray(input)) {
      throw new InvalidParameterError('body', 'must be a JSON object');
    }
    this.#values = input as Record<string, unknown>;
    for (const key of Object.keys(this.#values)) {
      if (!allowed.includes(key)) {
        throw new InvalidParameterError(key, `unknown ${source === 'query' ? 'query parameter' : 'field'}`);
      }
    }
  }

  has(name: string): boolean {
    return Object.hasOwn(this.#values, name) && this.#values[name] !== undefined;
  }

  raw(name: string): unknown {
    return Object.hasOwn(this.#values, name) ? this.#values[name] : undefined;
  }

  requiredString(name: string): string {
    const value = this.optionalString(name);
    if (value === undefined) throw new InvalidParameterError(name, 'is required');
    if (value.length === 0) throw new InvalidParameterError(name, 'must not be empty');
    return value;
  }

  /** A string, or `undefined` when absent. Empty strings are allowed (tenant `''` is the tenant-less key). */
  optionalString(name: string): string | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    if (Array.isArray(value)) throw new InvalidParameterError(name, 'must be given once');
    if (typeof value !== 'string') throw new InvalidParameterError(name, 'must be a string');
    if (value.length > MAX_PART_LENGTH) {
      throw new InvalidParameterError(name, `must be at most ${MAX_PART_LENGTH} characters`);
    }
    // NUL cannot be stored in Postgres text, and a lone surrogate would arrive there as U+FFFD (another value).
    const problem = textProblem(value);
    if (problem) throw new InvalidParameterError(name, `must be valid text without NUL: it ${problem}`);
    return value;
  }

  /**
   * Any JSON value, checked so it is stored exactly as sent: finite numbers only (`1e400` parses to Infinity, which
   * would be stored as null), and strings and keys that are valid Unicode text without NUL. `undefined` when absent.
   */
  optionalJson(name: string): unknown {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const problem = jsonValueProblem(value, name, { text: true });
    if (problem) throw new InvalidParameterError(name, problem);
    return value;
  }

  /** One of `choices`, or `fallback` when absent. */
  oneOf<T extends string>(name: string, choices: readonly T[], fallback?: T): T | undefined {
    const value = this.optionalString(name);
    if (value === undefined) return fallback;
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidParameterError(name, `must be one of ${choices.join(', ')}`);
    }
    return value as T;
  }

  /** A decimal integer in [min, max] (query strings carry it as text, bodies as a number). */
  optionalInt(name: string, min: number, max: number): number | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const text = typeof value === 'number' && this.#source === 'body' ? String(value) : value;
    if (typeof text !== 'string' || !/^\d{1,9}$/.test(text)) {
      throw new InvalidParameterError(name, `must be an integer from ${min} to ${max}`);
    }
    const n = Number(text);
    if (n < min || n > max) throw new InvalidParameterError(name, `must be an integer from ${min} to ${max}`);
    return n;
  }

  /**
   * An ISO-8601 time with a zone (`2026-05-01T12:00:00Z`, `...+02:00`) or a date (`2026-05-01`, midnight UTC), or
   * `undefined` when absent. A time without a zone is refused: whose local time would it be?
   */
  optionalTime(name: string): Date | undefined {
    const value = this.optionalString(name);
    if (value === undefined) return undefined;
    const date = ISO_TIME.test(value) ? new Date(value) : undefined;
    if (!date || Number.isNaN(date.getTime())) {
      throw new InvalidParameterError(name, 'must be an ISO-8601 time with a zone, e.g. 2026-05-01T12:00:00Z');
    }
    return date;
  }

  /** A duration such as `24h` or `90s`, in milliseconds, in (0, max]. */
  optionalDuration(name: string, maxMs: number): number | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const ms = typeof value === 'string' ? parseDuration(value) : undefined;
    if (ms === undefined || ms <= 0 || !Number.isFinite(ms)) {
      throw new InvalidParameterError(name, 'must be a positive duration such as 500ms, 90s, 30m, 24h');
    }
    if (ms > maxMs) throw new InvalidParameterError(name, `must be at most ${Math.round(maxMs / 3_600_000)}h`);
    return ms;
  }
}

/** Refuse any query parameter on an endpoint that takes none. */
export function noQuery(query: unknown): void {
  new Fields(query, 'query', []);
}
