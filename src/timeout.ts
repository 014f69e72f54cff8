/**
 * `work`, or a rejection with `timedOut()` once `ms` have passed, whichever comes first. The timer is cleared either
 * way, and a rejection of `work` that arrives after the timeout is swallowed (nobody is listening for it then). The
 * work itself is not cancelled: callers use this where an answer that comes too late is as good as none.
 *
 * @example await withTimeout(redis.ping(), 1000, () => new Error('no answer within 1000 ms'));
 */
export async function withTimeout<T>(work: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
    work.catch(() => {});
  }
}
