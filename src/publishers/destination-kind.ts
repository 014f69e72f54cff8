import type { ClaimedEvent } from '../outbox/types.js';
import { int64Text, parseTraceparent } from './job.js';
import type { MarkedScript } from './marked-batch.js';

/** What a Redis destination key holds: a list (LPUSH one job JSON) or a stream (XADD one entry). */
export type DestinationKind = 'list' | 'stream';

export const DESTINATION_KINDS: readonly DestinationKind[] = ['list', 'stream'];

/**
 * The event header that picks the kind for one event, over `outbox.publisher`: `destination: stream` sends that
 * event's entry to a stream while the rest of the outbox goes to lists, or the other way round.
 */
export const DESTINATION_HEADER = 'destination';

/**
 * The kind an event asks for in its `destination` header, else `fallback`; `{ invalid }` (the message) when the
 * header holds anything else — only a row written past `storeInOutbox`'s validation (plain SQL) can.
 *
 * The relay keeps headers as JSON text and never parses them per row; so they are parsed only when the text holds
 * `"destination"`, which jsonb prints exactly so for that key (an escaped quote inside a value never matches).
 */
export function destinationKindOf(
  event: ClaimedEvent,
  fallback: DestinationKind,
): DestinationKind | { invalid: string } {
  if (!event.headers.includes(`"${DESTINATION_HEADER}"`)) return fallback;
  const value = (JSON.parse(event.headers) as Record<string, unknown>)[DESTINATION_HEADER];
  if (value === undefined) return fallback;
  if (value === 'list' || value === 'stream') return value;
  return { invalid: `headers.${DESTINATION_HEADER} must be "list" or "stream", got ${JSON.stringify(value)}` };
}

/** The list script: LPUSH the job JSON (lua/publish-jobs.lua). */
export const LIST_SCRIPT: MarkedScript = {
  command: 'eoPublishJobs',
  file: 'publish-jobs.lua',
  noun: 'job',
  write: 'a push',
  headArgs: [],
  itemArgs: (_event, job) => [job.json],
};

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

/** The stream script: XADD the entry, `MAXLEN ~ maxlen` when set (lua/publish-stream-entries.lua). */
export function streamScript(maxlen: number | undefined): MarkedScript {
  return {
    command: 'eoPublishStream',
    file: 'publish-stream-entries.lua',
    noun: 'entry',
    write: 'an XADD',
    headArgs: [maxlen ?? 0, STREAM_FIELDS.length, ...STREAM_FIELDS],
    itemArgs: (event, _job, priority) => streamFields(event, priority),
  };
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
