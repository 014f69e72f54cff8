import { FeatureDisabledError, InvalidParameterError } from '../../errors.js';
import type { RedisClient } from '../../redis.js';
import { listDeadLetters, replayDeadLetters, workersOverview } from '../../worker/dead-letters.js';
import { queueLists, workerKeys } from '../../worker/keys.js';
import { type AdminContext, type AdminRoute, API_PREFIX } from '../route.js';
import { Fields, noQuery } from '../validate.js';

const URL = `${API_PREFIX}/workers`;
const MAX_IDS = 1000;

/** The manager's Redis client, which these routes read (a minimal admin backend without one gets 503). */
function redisOf(ctx: AdminContext): RedisClient {
  const redis = (ctx.manager as unknown as { redis?: Partial<RedisClient> }).redis;
  if (typeof redis?.lrange !== 'function' || typeof redis.scan !== 'function') throw new FeatureDisabledError('worker');
  return redis as RedisClient;
}

/**
 * `GET /workers` (heartbeats of Node and Go workers, orphaned processing lists, list sizes), `GET /workers/dead`
 * (the dead-letter list, newest first) and `POST /workers/dead/replay` (`{"ids": [job ids]}` or `{"all": true}`).
 * Keys under `worker.key_prefix`; replayed jobs go back where they died, else by priority to `worker.queue`'s lists.
 */
export function workerRoutes(ctx: AdminContext): AdminRoute[] {
  const settings = ctx.manager.config.worker;
  const keys = workerKeys(settings.keyPrefix);
  const fallback = {
    queues: queueLists(settings.queue ?? ctx.manager.config.outbox.queuePattern, settings.priorities),
    defaultPriority: settings.defaultPriority,
  };
  return [
    {
      method: 'GET',
      url: URL,
      access: 'read',
      async handler(request) {
        noQuery(request.query);
        const o = await workersOverview(redisOf(ctx), keys);
        return {
          key_prefix: keys.prefix,
          workers: o.workers.map((w) => ({
            id: w.id,
            runtime: w.runtime,
            ttl_ms: w.ttlMs,
            processing: w.processing,
            ...w.info,
          })),
          orphaned: o.orphaned,
          dead_letters: o.deadLetters,
          completed: o.completed,
        };
      },
    },
    {
      method: 'GET',
      url: `${URL}/dead`,
      access: 'read',
      async handler(request) {
        const q = new Fields(request.query, 'query', ['limit']);
        const limit = q.optionalInt('limit', 1, 1000) ?? 100;
        const { total, entries } = await listDeadLetters(redisOf(ctx), keys, limit);
        return {
          total,
          entries: entries.map((e) => ({
            id: e.id,
            error: e.error,
            failed_at: e.failedAt || null,
            from: e.from || null,
            kind: e.kind,
            priority: e.priority,
            retries: e.retries,
            job: e.raw,
          })),
        };
      },
    },
    {
      method: 'POST',
      url: `${URL}/dead/replay`,
      access: 'write',
      async handler(request) {
        noQuery(request.query);
        const b = new Fields(request.body, 'body', ['ids', 'all']);
        const all = b.raw('all');
        if (all !== undefined && all !== true) throw new InvalidParameterError('all', 'must be true');
        if (b.has('ids') === (all === true)) {
          throw new InvalidParameterError('ids', 'give one of ids (an array of job ids) or all: true');
        }
        let selection: { ids: string[] } | { all: true } = { all: true };
        if (b.has('ids')) {
          const ids = b.raw('ids');
          if (!Array.isArray(ids) || ids.length === 0 || ids.length > MAX_IDS) {
            throw new InvalidParameterError('ids', `must be an array of 1 to ${MAX_IDS} job ids`);
          }
          ids.forEach((id, i) => {
            if (typeof id !== 'string' || id === '')
              throw new InvalidParameterError(`ids[${i}]`, 'must be a non-empty string');
          });
          selection = { ids: ids as string[] };
        }
        const result = await replayDeadLetters(redisOf(ctx), keys, fallback, selection);
        return { replayed: result.replayed, missing: result.missing };
      },
    },
  ];
}
