import type { Logger } from '../logger.js';
import type { IdempotencyKey } from './keys.js';

/**
 * Lifecycle callbacks, the reference document's `ProcessingHook` in TypeScript idiom. `jobId` is the key's id.
 * Hooks run one after another in registration order and are awaited; a hook that throws (or rejects) is logged and
 * skipped, it never changes the outcome of processing.
 *
 * @example
 * service.registerHook({
 *   onDuplicate: (jobId) => logger.info({ jobId }, 'duplicate job detected'),
 * });
 */
export interface ProcessingHook {
  /** After the key was claimed, right before the processor runs. */
  beforeProcessing?(jobId: string, key: IdempotencyKey): unknown;
  /** After the processor finished and its key was stored (success) or released (`error` set). */
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

  async before(jobId: string, key: IdempotencyKey): Promise<void> {
    for (const hook of this.hooks)
      await this.call('beforeProcessing', jobId, () => hook.beforeProcessing?.(jobId, key));
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
