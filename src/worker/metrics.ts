/** What became of one job. */
export type JobOutcome = 'processed' | 'duplicate' | 'retried' | 'dead';

/**
 * Callbacks the worker reports to; `Metrics` (`exactly-once/metrics`) implements them with prom-client. Every method
 * is optional, and one that throws is ignored (metrics never break processing).
 *
 * | callback | metric |
 * |---|---|
 * | `workerJob` | `exactly_once_worker_jobs_total{queue, outcome}`, `exactly_once_worker_job_duration_seconds{queue, outcome}` |
 * | `workerReaped` | `exactly_once_worker_reaped_total` |
 * | `workerInFlight` | `exactly_once_worker_jobs_in_flight` |
 */
export interface WorkerMetrics {
  /** `queue` is the list or stream the job came from; `seconds` is the whole attempt, idempotency included. */
  workerJob?(queue: string, outcome: JobOutcome, seconds: number): void;
  /** Jobs of dead workers this process's reaper returned to their queues. */
  workerReaped?(count: number): void;
  /** Jobs running in this process now. */
  workerInFlight?(count: number): void;
}
