/**
 * `exactly-once/metrics`: the Prometheus metrics (prom-client) the relay, the idempotency service and the admin API
 * report to.
 *
 * @module exactly-once/metrics
 */

export type { MetricsOptions } from '../metrics/metrics.js';
export { Metrics } from '../metrics/metrics.js';
