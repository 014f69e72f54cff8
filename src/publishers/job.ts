import type { ClaimedEvent } from '../outbox/types.js';

/** The go-redis-work-queue job fields, then the event riding along (those workers ignore unknown fields). */
export interface Job {
  id: string;
  filepath: string;
  /** A Go int64: see `int64Text`. Written as exact integer text, so it may exceed a JS number's precision. */
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

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const JSON_NUMBER = /^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/;
/** 0, or a non-zero integer of up to 15 digits without leading zeros (what Postgres prints for a jsonb integer). */
const PLAIN_INT = /^(?:0|-?[1-9][0-9]{0,14})$/;

/**
 * The `filesize` a go-redis-work-queue worker can decode. Its Job struct holds `filesize int64`, and Go's
 * encoding/json runs strconv.ParseInt on the raw token: `9223372036854776000`, `1e+21` or `1.5` make the whole job
 * undecodable (the worker drops it). So the value is taken from the payload's number text (Postgres hands it over as
 * text, `payload->>'filesize'`, so no precision is lost on the way) and written as a plain integer when it is a whole
 * number within [-2^63, 2^63-1]: `123456789012345678` stays exact, `1e3` and `1.0` become `1000` and `1`, and a
 * negative size is passed through (Go decodes it; it is the producer's value). Anything else — a fraction (`1.5`),
 * a value out of int64 range (`1e21`), a non-number — becomes `0`, the job shape's "no size".
 *
 * @example int64Text('1e3') // '1000'
 */
export function int64Text(text: string | null): string {
  // The common case, a plain integer of up to 15 digits, is already its own canonical int64 text: skip the BigInt work.
  if (text !== null && PLAIN_INT.test(text)) return text;
  const m = text === null ? null : JSON_NUMBER.exec(text.trim());
  if (!m) return '0';
  const frac = m[3] ?? '';
  let digits = `${m[2]}${frac}`.replace(/^0+/, '');
  if (digits === '') return '0';
  const significant = digits.replace(/0+$/, '');
  // value = digits × 10^exp; the exponent text may be absurd (1e999999999), which Number handles as a magnitude.
  const exp = Number(m[4] ?? '0') - frac.length + (digits.length - significant.length);
  digits = significant;
  if (exp < 0 || digits.length + exp > 19) return '0'; // a fraction, or >= 10^19 (beyond int64)
  const value = BigInt(digits) * 10n ** BigInt(exp) * (m[1] === '-' ? -1n : 1n);
  return value < INT64_MIN || value > INT64_MAX ? '0' : value.toString();
}

/**
 * The job JSON for one event. Built by concatenation around the payload and headers text exactly as Postgres
 * returned it, so the relay never parses and re-serialises user payloads (the costliest per-row work otherwise).
 * Throws `RangeError` when the row has no job form (a `created_at` of `infinity` has no RFC 3339 time); the
 * publisher reports that as the event's own failure.
 */
export function jobJson(event: ClaimedEvent, priority: 'high' | 'low'): string {
  const { traceId, spanId } = parseTraceparent(event.traceparent);
  const created = event.createdAt as unknown;
  if (!(created instanceof Date) || Number.isNaN(created.getTime())) {
    throw new RangeError(`created_at ${String(created)} has no RFC 3339 form for the job's creation_time`);
  }
  return (
    `{"id":${JSON.stringify(event.id)}` +
    `,"filepath":${JSON.stringify(event.filepath ?? '')}` +
    `,"filesize":${int64Text(event.filesize)}` +
    `,"priority":"${priority}"` +
    ',"retries":0' +
    `,"creation_time":"${created.toISOString()}"` +
    `,"trace_id":"${traceId}","span_id":"${spanId}"` +
    `,"event_type":${JSON.stringify(event.eventType)}` +
    `,"aggregate_type":${JSON.stringify(event.aggregateType)}` +
    `,"aggregate_id":${JSON.stringify(event.aggregateId)}` +
    `,"tenant_id":${JSON.stringify(event.tenantId)}` +
    `,"payload":${event.payload}` +
    `,"headers":${event.headers}}`
  );
}
