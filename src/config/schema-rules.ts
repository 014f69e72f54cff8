import { z } from 'zod';
import { formatDuration, parseDuration } from './duration.js';

// The building blocks of the config schema (schema.ts and the sections in files of their own, such as
// worker-schema.ts): durations with their rules, positive integers.

/**
 * Largest delay a Node timer holds (a longer one fires after 1 ms) and largest value of a Postgres `int` of
 * milliseconds (`idle_in_transaction_session_timeout`, the relay's retry delays): 2^31-1 ms, about 24.8 days.
 */
export const MAX_INT_MS = 2_147_483_647;

interface DurationRule {
  /** Smallest accepted value, with why a smaller one breaks something. @defaultValue 1ms, "0 would ..." from `zero` */
  min?: { ms: number; why: string };
  /** Why 0 is refused (every duration but `zero: 'allowed'` ones must be > 0). */
  zero?: string;
  /** 0 has a meaning of its own for this key. */
  zeroAllowed?: true;
  /** Why the value must fit MAX_INT_MS (it feeds a timer or a Postgres int). Absent: no upper bound. */
  intMs?: string;
}

/**
 * A duration key: a string with a unit (or the number 0), in milliseconds. Every duration must be > 0 unless it says
 * what 0 means: a 0 lease, timeout or window silently switches a guarantee off instead of failing at start (G6).
 */
export const duration = (fallback: string, rule: DurationRule = {}) =>
  z
    .union([z.string(), z.number()])
    .transform((value, ctx) => {
      const ms = typeof value === 'number' ? (value === 0 ? 0 : undefined) : parseDuration(value);
      const fail = (message: string) => {
        ctx.addIssue({ code: 'custom', message });
        return z.NEVER;
      };
      if (ms === undefined) {
        return fail(`invalid duration ${JSON.stringify(value)}; use a number with a unit: 500ms, 5s, 30m, 24h, 168h`);
      }
      if (ms === 0 && rule.zeroAllowed) return ms;
      if (ms <= 0)
        return fail(`must be greater than 0: ${rule.zero ?? rule.min?.why ?? 'a 0 duration is no duration'}`);
      if (rule.min && ms < rule.min.ms) {
        return fail(`must be at least ${formatDuration(rule.min.ms)} (got ${formatDuration(ms)}): ${rule.min.why}`);
      }
      if (rule.intMs && ms > MAX_INT_MS) {
        return fail(`must be at most ${MAX_INT_MS}ms (about 24.8 days; got ${formatDuration(ms)}): ${rule.intMs}`);
      }
      return ms;
    })
    .default(parseDuration(fallback) as number);

export const TIMER = 'it is a Node timer, and a longer one fires at once';

export const positiveInt = (fallback: number) => z.int().positive().default(fallback);
