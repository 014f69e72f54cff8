import type { ClaimedEvent } from '../outbox/types.js';

/** The go-redis-work-queue job fields, then the event riding along (those workers ignore unknown fields). */
export interface Job {
  id: string;
  filepath: string;
  filesize: number;
  priority: 'high' | 'low';
  retries: number;
  creation_time: string;
  trace_id: string;
  span_id: string;
  event_type: string;
  aggregate_type: string;
  aggregate_id: string;
  tenant_id: string;
  payload: unknown;
  headers: Record<string, string>;
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

/** trace_id / span_id from a W3C traceparent; an invalid header is ignored, as the W3C spec asks. */
export function parseTraceparent(header: string | null): { traceId: string; spanId: string } {
  const m = header ? TRACEPARENT.exec(header.trim().toLowerCase()) : null;
  if (!m || /^0+$/.test(m[1] as string) || /^0+$/.test(m[2] as string)) return { traceId: '', spanId: '' };
  return { traceId: m[1] as string, spanId: m[2] as string };
}

export function priorityOf(event: ClaimedEvent, fallback: 'high' | 'low'): 'high' | 'low' {
  return event.priority === 'high' || event.priority === 'low' ? event.priority : fallback;
}

/**
 * The job JSON for one event. Built by concatenation around the payload and headers text exactly as Postgres
 * returned it, so the relay never parses and re-serialises user payloads (the costliest per-row work otherwise).
 */
export function jobJson(event: ClaimedEvent, priority: 'high' | 'low'): string {
  const { traceId, spanId } = parseTraceparent(event.traceparent);
  const filesize = event.filesize === null ? 0 : Math.trunc(Number(event.filesize)) || 0;
  return (
    `{"id":${JSON.stringify(event.id)}` +
    `,"filepath":${JSON.stringify(event.filepath ?? '')}` +
    `,"filesize":${filesize}` +
    `,"priority":"${priority}"` +
    ',"retries":0' +
    `,"creation_time":"${event.createdAt.toISOString()}"` +
    `,"trace_id":"${traceId}","span_id":"${spanId}"` +
    `,"event_type":${JSON.stringify(event.eventType)}` +
    `,"aggregate_type":${JSON.stringify(event.aggregateType)}` +
    `,"aggregate_id":${JSON.stringify(event.aggregateId)}` +
    `,"tenant_id":${JSON.stringify(event.tenantId)}` +
    `,"payload":${event.payload}` +
    `,"headers":${event.headers}}`
  );
}
