import type { Logger } from '../logger.js';
import type { KeyRef } from './keys.js';

export interface LeaseHandle {
  ref: KeyRef;
  leaseMs: number;
  /** Extend the claim; resolves `false` when it was lost. */
  renew(): Promise<boolean>;
  /** Drop the claim so the next caller runs. */
  release(): Promise<unknown>;
  logger: Logger;
}

/**
 * Run `work` while the claim's lease is renewed every third of the lease, so a long job keeps its key while a crashed
 * one loses it within one lease (G5). When `work` throws, the claim is released and the error rethrown.
 */
export async function holdingLease<T>(lease: LeaseHandle, work: () => Promise<T>): Promise<T> {
  const { ref, logger } = lease;
  let renewing = false;
  const timer = setInterval(
    () => {
      if (renewing) return;
      renewing = true;
      lease
        .renew()
        .then((held) => {
          if (!held) logger.warn({ key: ref.keyId, queue: ref.queueName }, 'idempotency lease lost while processing');
        })
        .catch((err) => logger.warn({ err, key: ref.keyId }, 'could not renew idempotency lease'))
        .finally(() => {
          renewing = false;
        });
    },
    Math.max(10, Math.floor(lease.leaseMs / 3)),
  );
  timer.unref();
  try {
    return await work();
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
