import type { ClaimedEvent } from '../outbox/types.js';
import type { RedisClient } from '../redis.js';
import { int64Text, parseTraceparent } from './job.js';
import { type MarkedBatchOptions, MarkedBatchPublisher } from './marked-batch.js';

/**
 * The entry fields, in this order: the go-redis-work-queue job's fields, then the event's. `payload` and `headers`
 * are JSON text, exactly as the outbox row holds them; every other value is plain text.
 */
export const STREAM_FIELDS = [
  'id',
  'filepath',
  'filesize',
  'priority',
  'retries',
  'creation_time',
  'trace_id',
  'span_id',
  'event_type',
  'aggregate_type',
  'aggregate_id',
  'tenant_id',
  'payload',
  'headers',
] as const;

export interface RedisStreamPublisherOptions extends MarkedBatchOptions {
  /** `MAXLEN ~` of every XADD (`outbox.stream.maxlen`); `undefined`: no trimming. */
  maxlen?: number | undefined;
}

/**
 * Publishes each event as one Redis Stream entry (`XADD <stream> * id ... payload ... headers ...`, see STREAM_FIELDS)
 * guarded by a per-event dedup marker in the same Lua script (lua/publish-stream-entries.lua), for consumers that want
 * consumer groups, acknowledgements and replay (examples/stream-consumer.ts).
 *
 * The guarantees, the failure attribution, the late-call deadline and `forget` are the list publisher's, from the same
 * module (marked-batch.ts): each event is appended once within the dedup window (G2); events of an aggregate are
 * appended in order, and a failing event holds back only its own aggregate (G3); an outage (connection lost, timeout,
 * LOADING, READONLY, OOM, CLUSTERDOWN, ...) throws `PublishUnavailableError` and the relay backs off. Markers live only
 * while a batch's outcome is unknown (issue 10): the relay deletes them after COMMIT, and the script refuses a call
 * that arrives past its deadline, so a late call of an abandoned attempt cannot append a second copy.
 */
export class RedisStreamPublisher extends MarkedBatchPublisher {
  constructor(redis: RedisClient, options: RedisStreamPublisherOptions = {}) {
    super(redis, options, {
      command: 'eoPublishStream',
      file: 'publish-stream-entries.lua',
      noun: 'entry',
      write: 'an XADD',
      headArgs: [options.maxlen ?? 0, STREAM_FIELDS.length, ...STREAM_FIELDS],
      itemArgs: (event, _job, priority) => streamFields(event, priority),
    });
  }

  /** The stream an event goes to: its `queue`, else `queuePattern` with its priority. */
  streamKeyFor(event: ClaimedEvent): string {
    return this.keyFor(event);
  }
}

/** The values of STREAM_FIELDS for one event (planBatch already built its job JSON, so its row has a job form). */
function streamFields(event: ClaimedEvent, priority: 'high' | 'low'): string[] {
  const { traceId, spanId } = parseTraceparent(event.traceparent);
  return [
    event.id,
    event.filepath ?? '',
    int64Text(event.filesize),
    priority,
    '0',
    event.createdAt.toISOString(),
    traceId,
    spanId,
    event.eventType,
    event.aggregateType,
    event.aggregateId,
    event.tenantId,
    event.payload,
    event.headers,
  ];
}
