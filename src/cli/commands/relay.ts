import { type OperationsHandle, startOperations } from '../../admin/start-operations.js';
import { createPool } from '../../db/pool.js';
import { FeatureDisabledError } from '../../errors.js';
import { Manager } from '../../manager.js';
import { Metrics } from '../../metrics/metrics.js';
import { createRedis } from '../../redis.js';
import { type Command, parseFlags, UsageError } from '../command.js';
import { cliContext } from '../context.js';

const USAGE = `Usage: exactly-once relay [--config FILE] [--concurrency N] [--port N] [--host ADDR]

Runs the relay daemon: moves committed outbox events into Redis, exactly once, in per-aggregate order.
Wakes on LISTEN/NOTIFY; outbox.poll_interval is the fallback. SIGTERM or SIGINT finishes the batch in
flight and exits 0. Run as many as you like, on any machines.

On the same port it serves the admin API (/api/v1/exactly-once/*), /metrics, /healthz and /readyz,
and it takes part in the cluster-wide cleanup schedule (pg-boss: one replica runs each tick).

  --concurrency N   claim loops in this process (outbox.concurrency)
  --port N          admin/metrics port (admin.port, default 8080; 0 picks a free one)
  --host ADDR       admin bind address (admin.host, default 127.0.0.1)`;

/** How long a shutdown may take before we give up on the batch in flight (its claim is rolled back by Postgres). */
const SHUTDOWN_GRACE_MS = 10_000;

export const relayCommand: Command = {
  name: 'relay',
  summary: 'run the outbox relay daemon',
  async run(argv) {
    const { values } = parseFlags(argv, {
      concurrency: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    let concurrency: number | undefined;
    if (values.concurrency !== undefined) {
      concurrency = Number(values.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1)
        throw new UsageError('--concurrency must be an integer >= 1');
    }
    let port: number | undefined;
    if (values.port !== undefined) {
      port = Number(values.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be 0..65535');
    }
    const host = typeof values.host === 'string' ? values.host : undefined;
    const ctx = cliContext(values);
    const config = concurrency ? { ...ctx.config, outbox: { ...ctx.config.outbox, concurrency } } : ctx.config;
    if (!config.outbox.enabled) throw new FeatureDisabledError('outbox');
    const logger = ctx.logger.child({ component: 'cli' });
    const pool = createPool(config.database.url, ctx.logger, { max: config.outbox.concurrency + 2 });
    const redis = createRedis(config.redis.url, ctx.logger);
    const metrics = config.metrics.enabled
      ? new Metrics({ config: config.metrics, pool, logger: ctx.logger })
      : undefined;
    const manager = new Manager(config, { pool, redis, logger: ctx.logger, ...(metrics ? { metrics } : {}) });
    const relay = manager.createRelay();
    let ops: OperationsHandle | undefined;

    const stopped = new Promise<number>((resolve) => {
      let signalled = false;
      const onSignal = (signal: NodeJS.Signals) => {
        if (signalled) {
          logger.warn({ signal }, 'second signal: exiting now');
          process.exit(1);
        }
        signalled = true;
        logger.info({ signal }, 'shutting down: finishing the batch in flight');
        const force = setTimeout(() => {
          logger.error('shutdown took too long; exiting (the open claim is rolled back by Postgres)');
          process.exit(1);
        }, SHUTDOWN_GRACE_MS);
        force.unref();
        relay
          .stop()
          .then(() => resolve(0))
          .catch((err) => {
            logger.error({ err }, 'error while stopping');
            resolve(1);
          });
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    });

    try {
      await relay.start();
      ops = await startOperations({ manager, metrics, logger: ctx.logger, host, port });
      if (ops.admin) logger.info({ url: ops.admin.url }, 'admin API, /metrics, /healthz and /readyz listening');
    } catch (err) {
      await relay.stop().catch(() => {});
      await ops?.close().catch(() => {});
      await manager.close();
      await Promise.allSettled([pool.end(), Promise.resolve(redis.disconnect())]);
      throw err;
    }
    const code = await stopped;
    await ops.close().catch((err) => logger.warn({ err }, 'error while closing the admin server'));
    await manager.close();
    redis.disconnect();
    await pool.end();
    return code;
  },
};
