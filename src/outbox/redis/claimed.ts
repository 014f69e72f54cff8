import type { ClaimedEvent } from '../types.js';
import { decodeEvent, splitAggregate } from './stored-event.js';

export interface ClaimedRedisEvent extends ClaimedEvent {
  aggregate: string;
  /** The `destination` header: only lists are served here. */
  destinationKind: string | undefined;
  /** Why its hash cannot be published from (damaged, or written past `storeInOutbox`): it fails alone, at once. */
  unreadable?: string;
}

/** A claimed event as the Postgres relay's job builder expects it (see rows.ts `toClaimed`). */
export function toClaimed(
  aggregate: string,
  id: string,
  data: string,
  seq: string,
  created: string,
  retries: string,
): ClaimedRedisEvent {
  const decoded = decodeEvent(data);
  if ('unreadable' in decoded) {
    return {
      aggregate,
      ...splitAggregate(aggregate),
      destinationKind: undefined,
      unreadable: decoded.unreadable,
      seq,
      id,
      eventType: '',
      tenantId: '',
      queue: null,
      retryCount: Number(retries),
      maxRetries: null,
      createdAt: new Date(Number(created)),
      payload: 'null',
      headers: '{}',
      priority: null,
      traceparent: null,
      filepath: null,
      filesize: null,
    };
  }
  const e = decoded;
  const payload = e.p as Record<string, unknown> | null;
  const field = (name: string) =>
    typeof payload === 'object' && payload !== null && !Array.isArray(payload) ? payload[name] : undefined;
  const filepath = field('filepath');
  const filesize = field('filesize');
  return {
    aggregate,
    destinationKind: e.h?.destination,
    seq,
    id,
    aggregateType: e.at ?? '',
    aggregateId: e.ai,
    eventType: e.et,
    tenantId: e.tn ?? '',
    queue: e.q ?? null,
    retryCount: Number(retries),
    maxRetries: e.mr ?? null,
    createdAt: new Date(Number(created)),
    payload: JSON.stringify(e.p ?? null),
    headers: JSON.stringify(e.h ?? {}),
    priority: e.h?.priority ?? null,
    traceparent: e.h?.traceparent ?? null,
    filepath: typeof filepath === 'string' ? filepath : null,
    filesize: typeof filesize === 'number' ? JSON.stringify(filesize) : null,
  };
}
