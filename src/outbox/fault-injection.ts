import { ConfigError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * TEST-ONLY fault injection for the relay's crash window. Off unless the environment variable is set; never set it in
 * production (docs/operations.md says so too).
 *
 * The dangerous moment of a relay is between the Redis push and the COMMIT that moves its lanes' cursors: a crash
 * there leaves jobs in Redis whose events are still pending, and only the high-water marks stop the next relay from
 * pushing them again (G2). Killing relays at random hits that window only by luck; with this switch a crash test hits
 * it on every run:
 *
 *   EXACTLY_ONCE_TEST_FAULT=kill-after-push     SIGKILL this process after the push returned, before COMMIT
 *   EXACTLY_ONCE_TEST_FAULT=stall-after-push    stop there instead (hang, holding the claim) until claim_timeout
 *                                              makes Postgres roll the claim back
 *   ...:N                                      fire on the Nth non-empty batch of this process (default 1st)
 *
 * Read once, when the relay is built; the hot path pays one `undefined` check.
 */
export const TEST_FAULT_ENV = 'EXACTLY_ONCE_TEST_FAULT';

type FaultKind = 'kill-after-push' | 'stall-after-push';

export class TestFault {
  readonly kind: FaultKind;
  readonly #at: number;
  readonly #log: Logger;
  #batches = 0;

  private constructor(kind: FaultKind, at: number, log: Logger) {
    this.kind = kind;
    this.#at = at;
    this.#log = log;
  }

  /** The switch from the environment, or `undefined` when it is off (always, outside tests). */
  static fromEnv(env: Record<string, string | undefined>, log: Logger): TestFault | undefined {
    const raw = env[TEST_FAULT_ENV];
    if (!raw) return undefined;
    const match = /^(kill-after-push|stall-after-push)(?::([1-9][0-9]*))?$/.exec(raw);
    if (!match) {
      throw new ConfigError(
        TEST_FAULT_ENV,
        `unknown test fault ${JSON.stringify(raw)}; expected kill-after-push or stall-after-push, optionally :N`,
      );
    }
    const fault = new TestFault(match[1] as FaultKind, Number(match[2] ?? 1), log);
    log.warn({ fault: raw }, `${TEST_FAULT_ENV} is set: this relay will crash on purpose (test-only switch)`);
    return fault;
  }

  /** Called after the publisher returned for a non-empty batch, before the rows are marked. */
  async afterPush(): Promise<void> {
    if (++this.#batches !== this.#at) return;
    if (this.kind === 'kill-after-push') {
      this.#log.error({ batch: this.#batches }, 'test fault: SIGKILL after the push, before COMMIT');
      // Give the log line a moment to leave the process; SIGKILL does not flush stdout.
      await new Promise((resolve) => setTimeout(resolve, 20));
      process.kill(process.pid, 'SIGKILL');
    } else {
      this.#log.error({ batch: this.#batches }, 'test fault: stalling after the push, before COMMIT');
    }
    // Never resolves: the batch's transaction stays open until Postgres ends it (claim_timeout) or the process dies.
    await new Promise<never>(() => {});
  }
}
