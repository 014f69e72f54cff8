import { RedisEvictionPolicyError } from '../../errors.js';
import { mastersOf, type RedisClient } from '../../redis.js';

/**
 * Refuse a Redis that may evict the outbox's keys: `maxmemory-policy allkeys-*` deletes any key when the server is
 * full, and a deleted event hash, aggregate list or status set loses or strands events (claim-4.lua fails an event
 * whose hash is gone, but cannot bring it back). `noeviction` and the `volatile-*` policies (the outbox keys have no
 * TTL) keep them. Read from `INFO memory`, which managed services that disable CONFIG still answer; every master of a
 * cluster is asked. Throws `RedisEvictionPolicyError`.
 *
 * @example if (config.outbox.storageType === 'redis') await refuseEvictingRedis(redis);
 */
export async function refuseEvictingRedis(redis: RedisClient): Promise<void> {
  for (const node of mastersOf(redis)) {
    const info = await node.info('memory');
    const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
    if (policy?.startsWith('allkeys-')) {
      throw new RedisEvictionPolicyError(`${node.options.host}:${node.options.port}`, policy);
    }
  }
}
