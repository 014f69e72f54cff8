import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseDuration } from '../../config/duration.js';
import { WorkerHandlerError } from '../../errors.js';
import { Metrics } from '../../metrics/metrics.js';
import { createRedisClient, redisConfigTarget } from '../../redis.js';
import { createWorker, type JobHandler } from '../../worker/create-worker.js';
import type { Worker } from '../../worker/worker.js';
import { type Command, intFlag, parseFlags, UsageError } from '../command.js';
import { cliContext } from '../context.js';
import { waitForPostgres, waitForRedis } from '../relay-startup.js';
import { serveWorkerHttp, type WorkerHttp } from '../worker-http.js';

const USAGE = `Usage: exactly-once worker --module FILE [--queue Q | --stream S [--group G]] [--concurrency N]
                           [--port N] [--host ADDR] [--wait DURATION] [--config FILE]

Consumes the lists the relay fills (go-redis-work-queue jobs; Go workers may share them) or a stream's consumer
group, and runs each job through FILE's handler with the idempotency service, so its effect happens once. Failed jobs
are retried with backoff (worker.max_retries, worker.backoff), then moved to <worker.key_prefix>dead_letter. Every
worker process also runs the reaper that returns dead workers' jobs. SIGTERM or SIGINT: no new jobs, running ones
finish (worker.shutdown_timeout), exit 0.

  --module FILE     ES module whose default export is the handler: a function (job, context) run with
                    processWithIdempotency, or { processInTransaction(job, trx, context) } run in the Postgres
                    transaction that records the job's key (or { process(job, context) })
  --queue Q         list, or pattern with {priority} (default: worker.queue, else outbox.queue_pattern)
  --stream S        consume stream S with a consumer group instead of lists
  --group G         the consumer group (default: worker.stream.group)
  --concurrency N   jobs at once in this process, 1..1000 (worker.concurrency, default 16)
  --port N          /metrics, /healthz, /readyz (default 9090; 0 picks a free port)
  --host ADDR       their bind address (default admin.host, 127.0.0.1)
  --wait DURATION   how long to wait at start for Redis and Postgres to answer (default 30s)`;

/** Past `worker.shutdown_timeout`, and this much more for closing connections, the process exits anyway. */
const EXIT_GRACE_MS = 5000;

export const workerCommand: Command = {
  name: 'worker',
  async run(argv) {
    const { values } = parseFlags(argv, {
      module: { type: 'string', short: 'm' },
      queue: { type: 'string' },
      stream: { type: 'string' },
      group: { type: 'string' },
      concurrency: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      wait: { type: 'string' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const text = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
    const moduleFile = text('module');
    if (!moduleFile) throw new UsageError('--module FILE is required (the handler module)');
    if (text('queue') !== undefined && text('stream') !== undefined)
      throw new UsageError('give --queue or --stream, not both');
    if (text('group') !== undefined && text('stream') === undefined) throw new UsageError('--group needs --stream');
    const concurrency = intFlag('concurrency', text('concurrency'), 1, 1000);
    const port = intFlag('port', text('port'), 0, 65535) ?? 9090;
    const waitText = text('wait');
    const waitMs = waitText === undefined ? 30_000 : waitText === '0' ? 0 : parseDuration(waitText);
    if (waitMs === undefined)
      throw new UsageError(`--wait must be a duration such as 30s, or 0 (got ${JSON.stringify(waitText)})`);

    const { config, logger: root } = cliContext(values);
    const logger = root.child({ component: 'cli' });
    // Signals are ours from here on: a SIGTERM while waiting for the services or starting still ends with exit 0.
    let worker: Worker | undefined;
    let early = false;
    const stopped = new Promise<number>((resolve) => {
      let signalled = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (signalled) {
          logger.warn({ signal }, 'second signal: exiting now');
          process.exit(1);
        }
        signalled = true;
        if (!worker) {
          early = true;
          resolve(0);
          return;
        }
        logger.info({ signal }, 'shutting down: finishing the jobs in flight');
        setTimeout(() => {
          logger.error('shutdown took too long; exiting (the reaper returns what is left)');
          process.exit(1);
        }, config.worker.shutdownTimeout + EXIT_GRACE_MS).unref();
        worker.stop().then(
          () => resolve(0),
          (err) => {
            logger.error({ err }, 'error while stopping');
            resolve(1);
          },
        );
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    });
    const handler = await loadHandler(moduleFile);
    const redis = createRedisClient(config.redis, root);
    const wait = { deadline: Date.now() + waitMs, waitMs, logger };
    try {
      await waitForRedis(redis, redisConfigTarget(config.redis), wait);
      if (config.idempotency.storage.type === 'database') {
        await waitForPostgres(config.database.url, config.database.connectTimeout, wait);
      }
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    if (early) {
      redis.disconnect();
      return 0;
    }
    const metrics = config.metrics.enabled ? new Metrics({ config: config.metrics, logger: root }) : undefined;
    const stream = text('stream');
    const group = text('group');
    const created: Worker = createWorker({
      ...{ config, redis, logger: root, ...(metrics ? { metrics } : {}) },
      ...(concurrency === undefined ? {} : { concurrency }),
      ...(stream === undefined ? { queue: text('queue') } : { stream, ...(group ? { group } : {}) }),
      ...handler,
    } as Parameters<typeof createWorker>[0]);
    worker = created;
    let http: WorkerHttp | undefined;
    try {
      await created.start();
      http = await serveWorkerHttp({ host: text('host') ?? config.admin.host, port, worker: created, redis, metrics });
      logger.info({ url: http.url, workerId: created.id }, 'worker running; /metrics, /healthz and /readyz listening');
    } catch (err) {
      await created.stop();
      redis.disconnect();
      throw err;
    }
    const code = await stopped;
    await http?.close();
    redis.disconnect();
    return code;
  },
};

/** The handler of `--module`: its default export, a function (processWithIdempotency) or an object naming the form. */
async function loadHandler(file: string): Promise<JobHandler> {
  const resolved = path.resolve(file);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(resolved).href)) as { default?: unknown };
  } catch (err) {
    throw new WorkerHandlerError(`cannot load the module: ${(err as Error).message}`, file, { cause: err });
  }
  const exported = mod.default;
  if (typeof exported === 'function') return { process: exported as JobHandler['process'] & {} };
  if (typeof exported === 'object' && exported !== null) {
    const { process: run, processInTransaction: inTransaction } = exported as Record<string, unknown>;
    if (typeof inTransaction === 'function') {
      return { processInTransaction: inTransaction as NonNullable<JobHandler['processInTransaction']> };
    }
    if (typeof run === 'function') return { process: run as NonNullable<JobHandler['process']> };
  }
  throw new WorkerHandlerError(
    'its default export must be a function (job, context) or { processInTransaction(job, trx, context) }',
    file,
  );
}
