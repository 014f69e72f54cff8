import { PAYLOAD_PREVIEW_BYTES, utf8Prefix } from '../payload-preview.js';
import type { NewOutboxEvent } from '../types.js';
import { aggregateMember } from './keys.js';

/**
 * The event as stored in its hash's `d` field: short names, defaults left out (memory per event, see README). `d` is
 * what the relay publishes from; everything else in the hash is bookkeeping (keys.ts).
 */
export interface StoredEventData {
  /** aggregateId */
  ai: string;
  /** eventType */
  et: string;
  /** payload */
  p: unknown;
  /** aggregateType */
  at?: string;
  h?: Record<string, string>;
  m?: Record<string, unknown>;
  /** tenantId */
  tn?: string;
  q?: string;
  /** maxRetries */
  mr?: number;
}

/**
 * A payload whose JSON text is larger than this also gets, in its hash, `dm` (the event without its payload), `pv`
 * (the payload's preview) and `pb` (its size): listings, the dashboard's counts and replays then read those small
 * fields instead of copying the whole `d` (a Lua script cannot read part of a field). Below it, `d` itself is small.
 */
export const LARGE_PAYLOAD_BYTES = 16 * 1024;

/** The hash fields of one event as the writer stores them (store.lua), and the payload as it will read back. */
export interface EncodedEvent {
  d: string;
  /** `dm`, `pv`, `pb`: only for a payload above `LARGE_PAYLOAD_BYTES`. */
  large: { dm: string; pv: string; pb: number } | undefined;
  /** The payload as JSON gives it back (a `Date` becomes its ISO string). */
  payload: unknown;
  metadata: Record<string, unknown>;
}

/** Encode an event for its hash; the payload is serialised once, however large. */
export function encodeEvent(e: NewOutboxEvent): EncodedEvent {
  const payloadJson = JSON.stringify(e.payload ?? null);
  // `p` is written third, after ai and et: the text before and after it is the event without its payload.
  const meta: StoredEventData = { ai: e.aggregateId, et: e.eventType, p: null };
  if (e.aggregateType) meta.at = e.aggregateType;
  if (e.headers && Object.keys(e.headers).length > 0) meta.h = e.headers;
  if (e.metadata && Object.keys(e.metadata).length > 0) meta.m = e.metadata;
  if (e.tenantId) meta.tn = e.tenantId;
  if (e.queue !== undefined) meta.q = e.queue;
  if (e.maxRetries !== undefined) meta.mr = e.maxRetries;
  const dm = JSON.stringify(meta);
  const head = `${JSON.stringify({ ai: meta.ai, et: meta.et }).slice(0, -1)},"p":`;
  const d = `${head}${payloadJson}${dm.slice(head.length + 'null'.length)}`;
  const bytes = Buffer.byteLength(payloadJson);
  return {
    d,
    large:
      bytes > LARGE_PAYLOAD_BYTES ? { dm, pv: utf8Prefix(payloadJson, PAYLOAD_PREVIEW_BYTES), pb: bytes } : undefined,
    payload: JSON.parse(payloadJson) as unknown,
    metadata: meta.m ? (JSON.parse(JSON.stringify(meta.m)) as Record<string, unknown>) : {},
  };
}

/**
 * Read an event's `d` (or `dm`) back, checking its shape: a hash can be damaged, or written past `storeInOutbox`, and
 * one such event must fail alone, never every read or claim that meets it. Returns why it is unreadable instead.
 */
export function decodeEvent(d: string | null | undefined): StoredEventData | { unreadable: string } {
  if (d === null || d === undefined || d === '') return { unreadable: 'its data is missing' };
  let e: unknown;
  try {
    e = JSON.parse(d);
  } catch (err) {
    return { unreadable: `its data is not JSON (${(err as Error).message})` };
  }
  const problem = shapeProblem(e);
  return problem === undefined ? (e as StoredEventData) : { unreadable: problem };
}

function shapeProblem(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return 'its data is not a JSON object';
  const r = e as Record<string, unknown>;
  if (typeof r.ai !== 'string' || typeof r.et !== 'string') return 'its data has no aggregate id or event type';
  for (const name of ['at', 'tn', 'q'] as const) {
    if (r[name] !== undefined && typeof r[name] !== 'string') return `its data's "${name}" is not a string`;
  }
  if (r.mr !== undefined && !Number.isInteger(r.mr)) return `its data's "mr" is not an integer`;
  const h = r.h;
  if (h !== undefined && (typeof h !== 'object' || h === null || Object.values(h).some((v) => typeof v !== 'string'))) {
    return 'its data\'s headers ("h") are not an object of strings';
  }
  if (r.m !== undefined && (typeof r.m !== 'object' || r.m === null || Array.isArray(r.m))) {
    return 'its data\'s metadata ("m") is not an object';
  }
  return undefined;
}

/** The aggregate member's two parts (keys.ts `aggregateMember`), e.g. from a claim or a failed event's `g` field. */
export function splitAggregate(member: string): { aggregateType: string; aggregateId: string } {
  const at = member.indexOf('\u0000');
  return at < 0
    ? { aggregateType: '', aggregateId: member }
    : { aggregateType: member.slice(0, at), aggregateId: member.slice(at + 1) };
}

/** The aggregate member of a stored event. */
export function memberOf(e: StoredEventData): string {
  return aggregateMember(e.at ?? '', e.ai);
}
