import type { Logger } from '../logger.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /** Consecutive infrastructure failures (the publisher threw) that open the circuit. */
  failureThreshold: number;
  /** How long the circuit stays open before one trial batch may go through (ms). */
  openForMs: number;
  /** `false`: never opens (every batch is attempted, as before the breaker existed). */
  enabled: boolean;
  logger: Logger;
  onState?: (state: BreakerState) => void;
}

/** What `Relay.health()` reports; readiness probes (`/readyz`) serve it. */
export interface RelayHealth {
  /** The relay can publish: the breaker is closed and publishing has not thrown `failure_threshold` times in a row. */
  ready: boolean;
  breaker: BreakerState;
  /** Why not ready. */
  reason?: string;
  /** The last infrastructure error of publishing (Redis unreachable, timeout, READONLY, OOM), while failing. */
  lastError?: string;
  /** When the publisher last returned (every event of that batch attempted). */
  lastSuccessAt?: Date | undefined;
  /** Publish attempts that threw, in a row. */
  consecutiveFailures: number;
}

/** What `enter()` granted: a normal batch, or the one trial batch of a half-open circuit. */
export type BreakerPermit = 'closed' | 'trial';

/**
 * The relay's circuit breaker around publishing (the reference document's (docs/reference-api.md) "Configure Circuit Breakers").
 *
 * closed --N consecutive publisher throws--> open --open_for--> half_open --trial batch published--> closed
 *                                             ^------------------- trial batch threw ----------------'
 *
 * Only the publisher *throwing* counts (Redis unreachable, timeout, READONLY, OOM): the whole batch could not be
 * attempted. Per-event failures come back as outcomes and are the retry policy's business, not the breaker's.
 * The relay asks `enter()` *before* it claims, so while the circuit is open nothing is claimed only to be rolled back.
 *
 * Why our own ~100 lines instead of a library (opossum, cockatiel): those wrap one async call and decide per call,
 * but the relay must decide *before* the claim (a Postgres transaction) whether the publish behind it may run, must
 * hand the half-open trial to exactly one of its claim loops, must not count a trial that found nothing to claim,
 * and must feed readiness and a gauge. Fitting that around a per-call wrapper took more code than the state machine,
 * and a dependency on the hot path of every producer's event for it was not worth it.
 */
export class CircuitBreaker {
  readonly #opts: CircuitBreakerOptions;
  #state: BreakerState = 'closed';
  #failures = 0;
  /** `performance.now()` time at which an open circuit lets a trial through. */
  #openUntil = 0;
  #trialInFlight = false;
  #lastError: string | undefined;
  #lastSuccessAt: Date | undefined;

  constructor(options: CircuitBreakerOptions) {
    this.#opts = options;
  }

  get state(): BreakerState {
    this.#advance();
    return this.#state;
  }

  get consecutiveFailures(): number {
    return this.#failures;
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  get lastSuccessAt(): Date | undefined {
    return this.#lastSuccessAt;
  }

  /** Readiness: also false with the breaker disabled once `failure_threshold` publishes in a row have thrown. */
  health(): RelayHealth {
    const breaker = this.state;
    const consecutiveFailures = this.#failures;
    const ready = breaker === 'closed' && consecutiveFailures < this.#opts.failureThreshold;
    const health: RelayHealth = { ready, breaker, lastSuccessAt: this.#lastSuccessAt, consecutiveFailures };
    if (this.#lastError !== undefined && consecutiveFailures > 0) health.lastError = this.#lastError;
    if (!ready) {
      health.reason =
        breaker === 'closed'
          ? `publishing failed ${consecutiveFailures} times in a row`
          : `circuit breaker ${breaker === 'open' ? 'open' : 'half-open'} after ${consecutiveFailures} consecutive publish failures`;
    }
    return health;
  }

  /**
   * May a batch be claimed now? Returns the permit, or `undefined` while open (or while another loop runs the
   * half-open trial). Every permit must be ended with `success`, `failure` or `leave`.
   */
  enter(): BreakerPermit | undefined {
    this.#advance();
    if (this.#state === 'closed') return 'closed';
    if (this.#state === 'half_open' && !this.#trialInFlight) {
      this.#trialInFlight = true;
      return 'trial';
    }
    return undefined;
  }

  /** Milliseconds until `enter()` may grant again (0 when it would now). */
  waitMs(): number {
    this.#advance();
    if (this.#state === 'closed') return 0;
    if (this.#state === 'open') return Math.max(1, Math.ceil(this.#openUntil - performance.now()));
    // half-open with the trial running: its end wakes the loops; this is only the fallback re-check.
    return this.#trialInFlight ? 100 : 0;
  }

  /** The batch claimed nothing, or failed before publishing (Postgres): the permit is returned unused. */
  leave(permit: BreakerPermit): void {
    if (permit === 'trial') this.#trialInFlight = false;
  }

  /** The publisher returned (whatever the per-event outcomes). */
  success(permit: BreakerPermit): void {
    this.#lastSuccessAt = new Date();
    this.#failures = 0;
    if (permit === 'trial') this.#trialInFlight = false;
    if (this.#state !== 'closed') {
      this.#transition('closed');
      this.#opts.logger.info('circuit breaker closed: publishing works again');
    }
  }

  /** The publisher threw: an infrastructure failure. */
  failure(permit: BreakerPermit, err: unknown): void {
    this.#failures++;
    this.#lastError = err instanceof Error ? err.message : String(err);
    if (permit === 'trial') this.#trialInFlight = false;
    if (!this.#opts.enabled) return;
    const trialFailed = permit === 'trial' || this.#state === 'half_open';
    if (trialFailed || (this.#state === 'closed' && this.#failures >= this.#opts.failureThreshold)) {
      this.#openUntil = performance.now() + this.#opts.openForMs;
      this.#transition('open');
      this.#opts.logger.warn(
        { consecutiveFailures: this.#failures, openForMs: this.#opts.openForMs, error: this.#lastError },
        trialFailed
          ? 'circuit breaker open again: the trial batch failed; no claims until the next trial'
          : 'circuit breaker open: publishing keeps failing; no claims until a trial batch succeeds',
      );
    }
  }

  /** Open -> half-open happens lazily, when someone looks after `open_for` has passed. */
  #advance(): void {
    if (this.#state === 'open' && performance.now() >= this.#openUntil) {
      this.#transition('half_open');
      this.#opts.logger.info('circuit breaker half-open: letting one trial batch through');
    }
  }

  #transition(state: BreakerState): void {
    this.#state = state;
    this.#opts.onState?.(state);
  }
}
