import { IdempotencyLeaseLostError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { KeyRef } from './keys.js';

export interface LeaseHandle {
  ref: KeyRef;
  leaseMs: number;
  /** `Date.now()` just before the claim was sent: the store's lease cannot have started earlier. */
  claimedAt: number;
  /** Extend the claim; resolves `false` when it was lost. */
  renew(): Promise<boolean>;
  /** Drop the claim (fenced by its token) so the next caller runs. */
  release(): Promise<unknown>;
  logger: Logger;
  /** Aborted (reason: `IdempotencyLeaseLostError`) when the lease is lost; the caller may abort it too, later. */
  controller: AbortController;
}

/**
 * Run `work` while the claim's lease is renewed every third of the lease, so a long job keeps its key while a crashed
 * one loses it within one lease (G5). When `work` throws, the claim is released and the error rethrown.
 *
 * `work` gets a signal that fires (reason: `IdempotencyLeaseLostError`) as soon as the claim may belong to someone
 * else (G4): a renewal found it taken over or deleted, or the lease ran out before a renewal could extend it (the
 * event loop was blocked, or the store was unreachable, for longer than the lease). The lapse is judged on this
 * process's clock from when each renewal was *sent*, which can only err towards firing early; it fires from a timer,
 * so a processor that blocks the event loop sees it at its next `await`. Whether the result still counts is decided
 * by the completion, which is fenced by the claim token: it succeeds only if nobody claimed the key in between.
 */
export async function holdingLease<T>(lease: LeaseHandle, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const { ref, logger } = lease;
  const { controller } = lease;
  let validUntil = lease.claimedAt + lease.leaseMs;
  let renewing = false;
  let timer: NodeJS.Timeout | undefined;

  const lose = (reason: string) => {
    if (controller.signal.aborted) return;
    clearInterval(timer);
    logger.warn({ key: ref.keyId, queue: ref.queueName, reason }, 'idempotency lease lost while processing');
    controller.abort(new IdempotencyLeaseLostError(ref.keyId, reason));
  };
  const check = () => {
    if (controller.signal.aborted) return;
    if (Date.now() >= validUntil) {
      lose(
        `the ${lease.leaseMs} ms lease ran out before it could be renewed (event loop blocked or store unreachable)`,
      );
      return;
    }
    if (renewing) return;
    renewing = true;
    const sentAt = Date.now();
    lease
      .renew()
      .then((held) => {
        if (held) validUntil = Math.max(validUntil, sentAt + lease.leaseMs);
        else lose('another caller took the key over, or it was deleted');
      })
      .catch((err) => logger.warn({ err, key: ref.keyId }, 'could not renew idempotency lease; retrying'))
      .finally(() => {
        renewing = false;
      });
  };
  timer = setInterval(check, Math.max(10, Math.floor(lease.leaseMs / 3)));
  timer.unref();
  try {
    return await work(controller.signal);
  } catch (err) {
    clearInterval(timer);
    // If the release fails, the lease still lapses and the next caller runs: the error we owe the caller is theirs.
    await lease
      .release()
      .catch((releaseErr) => logger.warn({ err: releaseErr, key: ref.keyId }, 'could not release idempotency key'));
    throw err;
  } finally {
    clearInterval(timer);
  }
}
