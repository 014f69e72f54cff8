import type { ClaimedEvent } from '../outbox/types.js';
import type { RedisClient } from '../redis.js';
import { type MarkedBatchOptions, MarkedBatchPublisher } from './marked-batch.js';

export type RedisListPublisherOptions = MarkedBatchOptions;

/**
 * The default publisher: LPUSHes one go-redis-work-queue job per event onto a Redis list (consumers pop from the
 * right, so each list is FIFO), guarded by the outbox lane's high-water mark in the same Lua script
 * (lua/publish-jobs.lua, lua/publish-marks.lua). An event with the header `destination: stream` is appended to a
 * stream instead (see RedisStreamPublisher). Batching, failure attribution, the marks and the late-call deadline are
 * marked-batch.ts's, shared with the stream publisher.
 */
export class RedisListPublisher extends MarkedBatchPublisher {
  constructor(redis: RedisClient, options: RedisListPublisherOptions = {}) {
    super(redis, options, 'list');
  }

  /** The list an event goes to. */
  listKeyFor(event: ClaimedEvent): string {
    return this.keyFor(event);
  }
}
