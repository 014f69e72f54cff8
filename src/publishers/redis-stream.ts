import type { ClaimedEvent } from '../outbox/types.js';
import type { RedisClient } from '../redis.js';
import { type MarkedBatchOptions, MarkedBatchPublisher } from './marked-batch.js';

export { STREAM_FIELDS } from './destination-kind.js';

export type RedisStreamPublisherOptions = MarkedBatchOptions;

/**
 * Publishes each event as one Redis Stream entry (`XADD <stream> * id ... payload ... headers ...`, see STREAM_FIELDS)
 * guarded by the outbox lane's high-water mark in the same Lua script (lua/publish-stream-entries.lua), for consumers
 * that want consumer groups, acknowledgements and replay (examples/stream-consumer.ts).
 *
 * The guarantees, the failure attribution, the marks and the late-call deadline are the list publisher's, from the
 * same module (marked-batch.ts): each event is appended once (G2); events of an aggregate are appended in order, and a
 * failing event holds back only its own aggregate (G3); an outage (connection lost, timeout, LOADING, READONLY, OOM,
 * CLUSTERDOWN, ...) throws `PublishUnavailableError` and the relay backs off. The script refuses a call that arrives
 * past its deadline, so a late call of an abandoned attempt cannot append a second copy.
 *
 * An event with the header `destination: list` is pushed to a list instead (see RedisListPublisher).
 */
export class RedisStreamPublisher extends MarkedBatchPublisher {
  constructor(redis: RedisClient, options: RedisStreamPublisherOptions = {}) {
    super(redis, options, 'stream');
  }

  /** The stream an event goes to: its `queue`, else `queuePattern` with its priority. */
  streamKeyFor(event: ClaimedEvent): string {
    return this.keyFor(event);
  }
}
