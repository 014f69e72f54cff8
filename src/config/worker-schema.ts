import { z } from 'zod';
import { duration, TIMER } from './schema-rules.js';

/**
 * Added: the `worker:` section (src/worker/). Names and defaults follow go-redis-work-queue's `worker:` config where it
 * has the key (`heartbeat_ttl`, `max_retries`, `backoff`, `priorities`, `brpoplpush_timeout` as `block_timeout`), so a
 * Node worker and a Go worker configured alike share one queue and one reaper's rules.
 */
export const worker = z.strictObject({
  /**
   * Prefix of the worker's keys: `<prefix>worker:<id>:processing` (processing lists), `<prefix>processing:worker:<id>`
   * (heartbeats), `<prefix>completed`, `<prefix>dead_letter`, `<prefix>workers` (the return addresses of live
   * workers). go-redis-work-queue's defaults are `jobqueue:`'s. @defaultValue "jobqueue:"
   */
  key_prefix: z
    .string()
    .min(1)
    .refine((p) => !/[*?[\]\\]/.test(p), 'must not contain SCAN pattern characters (* ? [ ] \\)')
    .default('jobqueue:'),
  /**
   * The list(s) to consume: `{priority}` is replaced by each of `priorities`, in order. @defaultValue unset
   * (`outbox.queue_pattern`, the lists the relay fills)
   */
  queue: z.string().min(1).optional(),
  /** Tried in this order: a job of the first is always taken before one of the second. @defaultValue ["high", "low"] */
  priorities: z
    .array(z.string().regex(/^[\w.-]+$/, 'letters, digits, _ . - only'))
    .min(1)
    .refine((p) => new Set(p).size === p.length, 'must not repeat a priority')
    .default(['high', 'low']),
  /** Where the reaper returns a job whose `priority` is not one of `priorities`. @defaultValue "low" */
  default_priority: z.string().min(1).default('low'),
  /** Jobs one process runs at once (go-redis-work-queue: `count`). @defaultValue 16 */
  concurrency: z.int().min(1).max(1000).default(16),
  /**
   * A worker renews its heartbeat every third of this; a processing list whose heartbeat is gone this long is a dead
   * worker's, and the reaper returns its jobs. @defaultValue 30s
   */
  heartbeat_ttl: duration('30s', {
    min: { ms: 1000, why: 'a shorter heartbeat lapses under an ordinary pause (GC, a busy event loop)' },
    intMs: TIMER,
  }),
  /** How long one blocking pop waits when every queue is empty (go-redis-work-queue: `brpoplpush_timeout`). @defaultValue 1s */
  block_timeout: duration('1s', {
    min: { ms: 10, why: 'each wake-up is a round trip to Redis, and a shorter wait makes an idle worker a busy loop' },
    intMs: TIMER,
  }),
  /** How often each worker process looks for dead workers' processing lists (go-redis-work-queue: every 5s). @defaultValue 5s */
  reaper_interval: duration('5s', { intMs: TIMER }),
  /** Failed attempts retried before a job goes to the dead-letter list. @defaultValue 3 */
  max_retries: z.int().min(0).default(3),
  backoff: z
    .strictObject({
      /** Delay before the first retry; doubles per retry. @defaultValue 500ms */
      base: duration('500ms', { intMs: TIMER }),
      /** @defaultValue 10s */
      max: duration('10s', { intMs: TIMER }),
    })
    .prefault({}),
  /** Completed jobs kept in `<prefix>completed` (newest first; 0 keeps none). @defaultValue 1000 */
  completed_max: z.int().min(0).default(1000),
  /** How long SIGTERM waits for running jobs before the process exits anyway. @defaultValue 30s */
  shutdown_timeout: duration('30s', { intMs: TIMER }),
  /** Redis Streams (`createWorker({ stream })`, `exactly-once worker --stream`). */
  stream: z
    .strictObject({
      /** The consumer group. @defaultValue "exactly-once" */
      group: z.string().min(1).default('exactly-once'),
      /** An entry read and not acknowledged for this long is taken over by XAUTOCLAIM. @defaultValue 30s */
      claim_idle: duration('30s', { intMs: TIMER }),
    })
    .prefault({}),
});
