import type { SqlExecutor } from '../../db/executor.js';
import type { OutboxInspector } from '../outbox-inspector.js';
import { cleanupOutbox } from './cleanup.js';
import { failedGroups, heldAggregates, outboxTraffic, overviewBacklog } from './insights.js';
import { getOutboxEvent, listOutboxEvents, outboxBacklog, retryOutboxEvents } from './inspect.js';

/**
 * The Postgres outbox's inspector: the functions of inspect.ts, insights.ts and cleanup.ts, options passed through
 * unchanged. Reads go to `read` (the admin API's own small pool in a relay), replays and cleanup to `write`.
 */
export function postgresOutboxInspector(pools: { read: SqlExecutor; write?: SqlExecutor }): OutboxInspector {
  const write = pools.write ?? pools.read;
  return {
    storage: 'database',
    list: (options) => listOutboxEvents(pools.read, options),
    backlog: () => outboxBacklog(pools.read),
    retry: (selection) => retryOutboxEvents(write, selection),
    get: (id) => getOutboxEvent(pools.read, id),
    overviewBacklog: () => overviewBacklog(pools.read),
    traffic: async (rule, sinceMs, bucketMs) => ({
      ...(await outboxTraffic(pools.read, rule, sinceMs, bucketMs)),
      capped: false,
    }),
    held: (limit) => heldAggregates(pools.read, limit),
    failedGroups: (limit) => failedGroups(pools.read, limit),
    cleanup: (olderThanMs) => cleanupOutbox(write, { olderThanMs }),
  };
}
