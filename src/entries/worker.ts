// `exactly-once/worker`: the worker for the lists (or streams) the relay fills, with every job's effect exactly once
// through the idempotency service; the dead-letter list's readers. Loads ioredis, pg and pino, never fastify or
// prom-client (hand it a `Metrics` from `exactly-once/metrics` to count).

export type {
  JobContext,
  JobHandler,
  JobProcessor,
  JobTransactionProcessor,
  ListWorkerOptions,
  StreamWorkerOptions,
  WorkerCommonOptions,
  WorkerIdempotency,
  WorkerOptions,
} from '../worker/create-worker.js';
export { createWorker } from '../worker/create-worker.js';
export type { WorkerJob } from '../worker/job.js';
export type { JobOutcome, WorkerMetrics } from '../worker/metrics.js';
export type { Worker, WorkerState, WorkerStats } from '../worker/worker.js';
