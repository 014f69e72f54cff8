import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { JobOutcome, WorkerMetrics } from '../worker/metrics.js';

/**
 * The worker's Prometheus metrics (src/worker/), on the `Metrics` registry: jobs by outcome (processed, duplicate,
 * retried, dead) and queue, the time of each attempt, jobs returned by the reaper, jobs running now.
 */
export class WorkerCounters implements WorkerMetrics {
  readonly jobs: Counter<'queue' | 'outcome'>;
  readonly jobDuration: Histogram<'queue' | 'outcome'>;
  readonly reaped: Counter;
  readonly inFlight: Gauge;
  readonly #queue: (queue: string) => string;

  constructor(registry: Registry, buckets: number[], queueLabel: (queue: string) => string) {
    const registers = [registry];
    this.#queue = queueLabel;
    this.jobs = new Counter({
      name: 'exactly_once_worker_jobs_total',
      help: 'Jobs the worker finished an attempt of, by queue (list or stream) and outcome: processed (the handler ran), duplicate (its idempotency key had completed: not run again), retried (failed, sent back with backoff), dead (moved to the dead-letter list).',
      labelNames: ['queue', 'outcome'],
      registers,
    });
    this.jobDuration = new Histogram({
      name: 'exactly_once_worker_job_duration_seconds',
      help: 'Time of one job attempt in the worker, idempotency check and acknowledgement included, by queue and outcome.',
      labelNames: ['queue', 'outcome'],
      buckets,
      registers,
    });
    this.reaped = new Counter({
      name: 'exactly_once_worker_reaped_total',
      help: "Jobs of dead workers (processing lists whose heartbeat expired) this process's reaper returned to their queues.",
      registers,
    });
    this.inFlight = new Gauge({
      name: 'exactly_once_worker_jobs_in_flight',
      help: 'Jobs the worker of this process is running now.',
      registers,
    });
  }

  workerJob(queue: string, outcome: JobOutcome, seconds: number): void {
    const labels = { queue: this.#queue(queue), outcome };
    this.jobs.inc(labels);
    this.jobDuration.observe(labels, seconds);
  }

  workerReaped(count: number): void {
    if (count > 0) this.reaped.inc(count);
  }

  workerInFlight(count: number): void {
    this.inFlight.set(count);
  }
}
