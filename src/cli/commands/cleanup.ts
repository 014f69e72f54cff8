import { CLEANUP_TYPES, type CleanupReport, type CleanupRequest, runCleanup } from '../../maintenance/run-cleanup.js';
import { RedisOutboxInspector } from '../../outbox/redis/inspector.js';
import { type Command, parseFlags, UsageError } from '../command.js';
import { type OperatorContext, operatorContext, output } from './operator-context.js';

const USAGE = `Usage: exactly-once cleanup [--type idempotency|outbox|all] [--json] [--config FILE]

Runs cleanup now, in this process: expired idempotency keys, and published/failed outbox events older
than outbox.cleanup_after (pending events are never deleted). Relays run the same cleanup on schedule,
once per cluster; this is for running it by hand. Default type: all (disabled features are skipped).`;

export const cleanupCommand: Command = {
  name: 'cleanup',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, { type: { type: 'string' }, json: { type: 'boolean' } });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const type = (values.type ?? 'all') as CleanupRequest;
    if (!CLEANUP_TYPES.includes(type)) throw new UsageError(`--type must be one of ${CLEANUP_TYPES.join(', ')}`);
    const ctx = operatorContext(values);
    try {
      const report = await cleanup(ctx, type);
      output(values.json === true, report, () =>
        [
          ...(report.idempotency ? [`idempotency: deleted ${report.idempotency.deleted} expired keys`] : []),
          ...(report.outbox
            ? [`outbox: deleted ${report.outbox.deleted} old events in ${report.outbox.batches} batches`]
            : []),
          ...(report.skipped ?? []).map((s) => `${s.type}: skipped (${s.reason})`),
          `took ${report.durationMs} ms`,
        ].join('\n'),
      );
      return 0;
    } finally {
      await ctx.close();
    }
  },
};

/** `runCleanup`, except that the Redis outbox (`outbox.storage_type: redis`) is cleaned in Redis. */
async function cleanup(ctx: OperatorContext, type: CleanupRequest): Promise<CleanupReport> {
  const deps = { config: ctx.config, pool: ctx.pool(), idempotency: ctx.idempotency(), logger: ctx.logger };
  const o = ctx.config.outbox;
  if (o.storageType !== 'redis' || !o.enabled || type === 'idempotency') return runCleanup(deps, type);
  const started = performance.now();
  const report: CleanupReport =
    type === 'all' && ctx.config.idempotency.enabled ? await runCleanup(deps, 'idempotency') : { durationMs: 0 };
  report.outbox = await new RedisOutboxInspector(ctx.redis(), o).cleanup(o.cleanupAfter);
  report.durationMs = Math.round(performance.now() - started);
  return report;
}
