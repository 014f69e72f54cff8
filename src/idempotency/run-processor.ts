import { IdempotencyLeaseLostError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { HookRegistry } from './hooks.js';
import type { IdempotencyKey } from './keys.js';

/**
 * Thrown through the service's `execute` loop so a call that ended without a stored result (the processor threw, a
 * beforeProcessing hook aborted, the lease was lost) is told apart from a storage failure. `seconds` is set when the
 * processor ran.
 */
export class CallFailure {
  constructor(
    readonly error: unknown,
    readonly cause: 'processor' | 'hook' | 'lease',
    readonly seconds?: number,
  ) {}
}

export interface RunDeps {
  hooks: HookRegistry;
  logger: Logger;
  /** The processor returned after `seconds`. */
  succeeded(queueName: string, seconds: number): void;
}

/**
 * beforeProcessing hooks, then the processor; its result JSON-encoded once, every way it can end without a result
 * thrown as a `CallFailure`. With a `signal` (the plain form's lease), an error after the signal fired becomes
 * `IdempotencyLeaseLostError` with the processor's error as `cause`.
 */
export async function runProcessor<T>(
  deps: RunDeps,
  key: IdempotencyKey,
  processor: () => Promise<T> | T,
  signal?: AbortSignal,
): Promise<{ result: T; json: string }> {
  try {
    await deps.hooks.before(key.id, key);
  } catch (err) {
    throw new CallFailure(err, 'hook');
  }
  const started = performance.now();
  let result: T;
  try {
    result = await processor();
  } catch (error) {
    const seconds = (performance.now() - started) / 1000;
    const lost = signal?.aborted ? (signal.reason as IdempotencyLeaseLostError) : undefined;
    if (!lost) throw new CallFailure(error, 'processor', seconds);
    const typed = error === lost ? lost : new IdempotencyLeaseLostError(key.id, lost.reason, { cause: error });
    throw new CallFailure(typed, 'lease', seconds);
  }
  deps.succeeded(key.queueName, (performance.now() - started) / 1000);
  return { result, json: resultJson(deps.logger, key, result) };
}

/**
 * The stored form of a result. One that is not JSON (a BigInt, a cycle, `undefined`) is stored as `null`, loudly:
 * the processor ran, so the key must be completed all the same or the next delivery would run it again.
 */
function resultJson(logger: Logger, key: IdempotencyKey, result: unknown): string {
  try {
    const json = JSON.stringify(result);
    if (json !== undefined) return json;
  } catch (err) {
    logger.error({ err, key: key.id }, 'processor result is not JSON-serialisable; duplicates will get null');
  }
  return 'null';
}
