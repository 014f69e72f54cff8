import { IdempotencyHookAbortedError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { IdempotencyKey } from './keys.js';

/**
 * Lifecycle callbacks, the reference document's (docs/reference-api.md) `ProcessingHook` in TypeScript idiom. `jobId` is the key's id.
 * Hooks run one after another in registration order and are awaited.
 *
 * As in the reference document, where `BeforeProcessing` returns an error that aborts processing, a
 * `beforeProcessing` hook that throws (or rejects) aborts the call: the processor does not run, the key is released
 * (a retry can run), later hooks are skipped, and the caller gets `IdempotencyHookAbortedError` with the hook's error
 * as `cause`. `afterProcessing` and `onDuplicate` run once the outcome is settled, so one that throws is logged and
 * skipped: it never changes the outcome (the result is already stored).
 *
 * @example
 * service.registerHook({
 *   beforeProcessing: (jobId) => {
 *     if (paused.has(jobId)) throw new Error('tenant paused'); // the caller gets IdempotencyHookAbortedError
 *   },
 *   onDuplicate: (jobId) => logger.info({ jobId }, 'duplicate job detected'),
 * });
 */
export interface ProcessingHook {
  /** After the key was claimed, right before the processor runs. Throwing aborts the call (see above). */
  beforeProcessing?(jobId: string, key: IdempotencyKey): unknown;
  /**
   * After the processor finished and its key was stored (success) or released (`error` set: the processor's error, or
   * `IdempotencyLeaseLostError`). Not called when a `beforeProcessing` hook aborted the call.
   */
  afterProcessing?(jobId: string, result: unknown, error: unknown): unknown;
  /** When the key was already completed; `existingResult` is the stored result. */
  onDuplicate?(jobId: string, existingResult: unknown): unknown;
}

export class HookRegistry {
  private hooks: ProcessingHook[] = [];

  constructor(private readonly logger: Logger) {}

  /** Returns a function that unregisters the hook. */
  register(hook: ProcessingHook): () => void {
    this.hooks.push(hook);
    return () => {
      this.hooks = this.hooks.filter((h) => h !== hook);
    };
  }

  /** Throws `IdempotencyHookAbortedError` for the first hook that throws; the hooks after it do not run. */
  async before(jobId: string, key: IdempotencyKey): Promise<void> {
    for (const hook of this.hooks) {
      try {
        await hook.beforeProcessing?.(jobId, key);
      } catch (err) {
        throw new IdempotencyHookAbortedError(jobId, { cause: err });
      }
    }
  }

  async after(jobId: string, result: unknown, error: unknown): Promise<void> {
    for (const hook of this.hooks) {
      await this.call('afterProcessing', jobId, () => hook.afterProcessing?.(jobId, result, error));
    }
  }

  async duplicate(jobId: string, existingResult: unknown): Promise<void> {
    for (const hook of this.hooks)
      await this.call('onDuplicate', jobId, () => hook.onDuplicate?.(jobId, existingResult));
  }

  private async call(name: string, jobId: string, fn: () => unknown): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.logger.warn({ err, hook: name, jobId }, 'idempotency hook failed; processing continues');
    }
  }
}
