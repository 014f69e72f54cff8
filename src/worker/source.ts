import type { WorkerJob } from './job.js';

/** One job as the worker took it: its text as it sits in Redis, where it came from, and the job or why it is none. */
export interface Delivery {
  /** The job text exactly as popped (a list) or the entry's fields as JSON (a stream). */
  readonly raw: string;
  /** The list or stream it was taken from. */
  readonly from: string;
  readonly parsed: { readonly job: WorkerJob } | { readonly problem: string };
  /** The stream entry id (streams only). */
  readonly entryId?: string;
}

/**
 * Where jobs come from and go to: a set of lists (`ListSource`) or a stream's consumer group (`StreamSource`). The
 * worker (worker.ts) runs the same loop over either; every method throws on a Redis failure and the worker retries.
 */
export interface JobSource {
  readonly kind: 'list' | 'stream';
  /** What the heartbeat and the dashboard show this worker consumes. */
  readonly describes: Record<string, unknown>;
  /** Create what must exist (a consumer group; the worker's return address). */
  open(): Promise<void>;
  /** Up to `max` deliveries; when none is waiting, waits for one up to `block_timeout` and may return none. */
  take(max: number): Promise<Delivery[]>;
  /** The effect is done: acknowledge. */
  complete(delivery: Delivery): Promise<void>;
  /** Send the job back to be tried again, with `retries` as its new count. */
  retry(delivery: Delivery, retries: number): Promise<void>;
  /** Move the job to the dead-letter list with why. */
  dead(delivery: Delivery, error: string, retries: number): Promise<void>;
  /** The worker stopped: return whatever is still its own (jobs it took and will not run), and forget its address. */
  close(): Promise<void>;
}
