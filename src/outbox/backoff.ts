/** The reference document's (docs/reference-api.md) `retry_backoff` block, durations in ms. */
export interface BackoffPolicy {
  initialDelay: number;
  maxDelay: number;
  multiplier: number;
  jitter: boolean;
}

/**
 * Delay before retry number `attempt` (1 = first retry): `initialDelay * multiplier^(attempt-1)`, capped at
 * `maxDelay`. With jitter the delay is drawn from [delay/2, delay] ("equal jitter"): relays that failed together
 * spread out, yet with multiplier >= 2 each retry still waits at least as long as the one before.
 *
 * @example backoffDelay(3, { initialDelay: 1000, maxDelay: 60_000, multiplier: 2, jitter: false }) // 4000
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exp = Math.max(0, attempt - 1);
  const raw = Math.min(policy.maxDelay, policy.initialDelay * policy.multiplier ** exp);
  if (!policy.jitter) return Math.round(raw);
  return Math.round(raw / 2 + (random() * raw) / 2);
}
