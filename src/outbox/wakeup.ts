/**
 * A wake-up signal for sleeping loops. `wake()` ends every current `sleep()` at once; a wake with nobody asleep is
 * remembered, so a NOTIFY that arrives while a batch is running is not lost.
 */
export class Wakeup {
  #pending = false;
  #waiters = new Set<() => void>();

  wake(): void {
    if (this.#waiters.size === 0) {
      this.#pending = true;
      return;
    }
    for (const resolve of this.#waiters) resolve();
    this.#waiters.clear();
  }

  /** Resolve after `ms`, or earlier on `wake()`. Returns true when woken. */
  sleep(ms: number): Promise<boolean> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const done = (woken: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(onWake);
        resolve(woken);
      };
      const onWake = () => done(true);
      const timer = setTimeout(() => done(false), Math.max(0, ms));
      this.#waiters.add(onWake);
    });
  }
}
