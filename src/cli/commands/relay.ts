import { createPool } from '../../db/pool.js';
import { FeatureDisabledError } from '../../errors.js';
import { Manager } from '../../manager.js';
import { createRedis } from '../../redis.js';
import { type Command, parseFlags, UsageError } from '../command.js';
import { cliContext } from '../context.js';

const USAGE = `Usage: exactly-once relay [--config FILE] [--concurrency N]

Runs the relay daemon: moves committed outbox events into Redis, exactly once, in per-aggregate order.
Wakes on LISTEN/NOTIFY; outbox.poll_interval is the fallback. SIGTERM or SIGINT finishes the batch in
flight and exits 0. Run as many as you like, on any machines.

  --concurrency N   claim loops in this process (outbox.concurrency)`;

/** How long a shutdown may take before we give up on the batch in flight (its claim is rolled back by Postgres). */
const SHUTDOWN_GRACE_MS = 10_000;

export const relayCommand: Command = {
  name: 'relay',
  summary: 'run the outbox relay daemon',
  async run(argv) {
    const { values } = parseFlags(argv, { concurrency: { type: 'string' } });
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
    const ctx = cliContext(values);
    const config = concurrency ? { ...ctx.config, outbox: { ...ctx.config.outbox, concurrency } } : ctx.config;
    if (!config.outbox.enabled) throw new FeatureDisabledError('outbox');
    const logger = ctx.logger.child({ component: 'cli' });
    const pool = createPool(config.database.url, ctx.logger, { max: config.outbox.concurrency + 2 });
    const redis = createRedis(config.redis.url, ctx.logger);
    const manager = new Manager(config, { pool, redis, logger: ctx.logger });
    const relay = manager.createRelay();

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
    } catch (err) {
      await Promise.allSettled([pool.end(), Promise.resolve(redis.disconnect())]);
      throw err;
    }
    const code = await stopped;
    redis.disconnect();
    await pool.end();
    return code;
  },
};
