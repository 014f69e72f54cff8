import { dedupStatsJson } from '../../admin/serialize.js';
import { FeatureDisabledError } from '../../errors.js';
import { type Command, parseFlags, UsageError } from '../command.js';
import { operatorContext, output } from './operator-context.js';

const USAGE = `Usage: exactly-once stats --queue Q [--tenant T] [--json] [--config FILE]

Deduplication statistics of one queue (all its tenants, or one with --tenant; --tenant '' means
tenant-less keys only), and the outbox backlog.

  --queue Q    queue name (required)
  --tenant T   one tenant of the queue
  --json       print JSON (the admin API's GET /stats shape, plus "outbox")`;

export const statsCommand: Command = {
  name: 'stats',
  usage: USAGE,
  async run(argv) {
    const { values } = parseFlags(argv, {
      queue: { type: 'string', short: 'q' },
      tenant: { type: 'string', short: 't' },
      json: { type: 'boolean' },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const queue = values.queue;
    if (typeof queue !== 'string' || queue === '') throw new UsageError('--queue is required', { showUsage: true });
    const tenant = typeof values.tenant === 'string' ? values.tenant : undefined;
    const ctx = operatorContext(values);
    try {
      const service = ctx.idempotency();
      if (!service) throw new FeatureDisabledError('idempotency');
      const [stats, backlog] = await Promise.all([
        service.getDedupStats(queue, tenant),
        ctx.config.outbox.enabled ? ctx.outbox().backlog() : Promise.resolve(undefined),
      ]);
      const json = {
        ...dedupStatsJson(stats),
        ...(backlog
          ? {
              outbox: {
                pending: backlog.pending,
                failed: backlog.failed,
                oldest_pending_age_seconds: backlog.oldestPendingAgeSeconds,
              },
            }
          : {}),
      };
      output(values.json === true, json, () =>
        [
          `queue               ${stats.queueName}`,
          `tenant              ${stats.tenantId ?? '(all tenants)'}`,
          `keys stored         ${stats.totalKeys}`,
          `requests            ${stats.totalRequests}`,
          `duplicates avoided  ${stats.duplicatesAvoided}`,
          `hit rate            ${(stats.hitRate * 100).toFixed(1)}%`,
          `last updated        ${stats.lastUpdated?.toISOString() ?? 'never'}`,
          ...(backlog
            ? [
                `outbox pending      ${backlog.pending} (oldest ${backlog.oldestPendingAgeSeconds.toFixed(1)} s)`,
                `outbox failed       ${backlog.failed}`,
              ]
            : []),
        ].join('\n'),
      );
      return 0;
    } finally {
      await ctx.close();
    }
  },
};
