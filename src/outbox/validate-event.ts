import { OutboxEventValidationError } from '../errors.js';
import { UUID_RE } from './ids.js';
import type { NewOutboxEvent } from './types.js';

const FIELDS = new Set([
  'id',
  'aggregateId',
  'aggregateType',
  'eventType',
  'payload',
  'headers',
  'metadata',
  'tenantId',
  'queue',
  'maxRetries',
]);
const MAX_ID_LENGTH = 1024;

/**
 * Check one event before anything is written. Throws `OutboxEventValidationError` naming the field
 * (and the index, for a batch). JSON values are checked the way Postgres' jsonb will see them.
 */
export function validateEvent(event: unknown, index?: number): asserts event is NewOutboxEvent {
  const fail = (field: string, message: string): never => {
    throw new OutboxEventValidationError(field, message, index);
  };
  if (typeof event !== 'object' || event === null || Array.isArray(event)) fail('event', 'must be an object');
  const e = event as Record<string, unknown>;
  for (const key of Object.keys(e)) {
    if (!FIELDS.has(key) && e[key] !== undefined) {
      const hint = [...FIELDS].find((f) => f.toLowerCase() === key.toLowerCase().replace(/_/g, ''));
      fail(key, `unknown field${hint ? ` (did you mean ${hint}?)` : ''}`);
    }
  }
  requiredString(e.aggregateId, 'aggregateId', fail);
  requiredString(e.eventType, 'eventType', fail);
  optionalString(e.aggregateType, 'aggregateType', fail);
  optionalString(e.tenantId, 'tenantId', fail);
  if (e.queue !== undefined) requiredString(e.queue, 'queue', fail);
  if (e.id !== undefined && (typeof e.id !== 'string' || !UUID_RE.test(e.id))) fail('id', 'must be a UUID');
  if (e.maxRetries !== undefined && !(Number.isInteger(e.maxRetries) && (e.maxRetries as number) >= 0)) {
    fail('maxRetries', 'must be an integer >= 0');
  }
  if (e.payload === undefined) fail('payload', 'is required (use null for an empty payload)');
  checkJson(e.payload, 'payload', fail);
  if (e.headers !== undefined) {
    if (!isPlainObject(e.headers)) fail('headers', 'must be an object of string values');
    for (const [k, v] of Object.entries(e.headers as object)) {
      if (typeof v !== 'string') fail(`headers.${k}`, 'must be a string');
      checkString(v as string, `headers.${k}`, fail);
    }
    const priority = (e.headers as Record<string, string>).priority;
    if (priority !== undefined && priority !== 'high' && priority !== 'low') {
      fail('headers.priority', `must be "high" or "low", got ${JSON.stringify(priority)}`);
    }
  }
  if (e.metadata !== undefined) {
    if (!isPlainObject(e.metadata)) fail('metadata', 'must be an object');
    checkJson(e.metadata, 'metadata', fail);
  }
}

type Fail = (field: string, message: string) => never;

function requiredString(value: unknown, field: string, fail: Fail): void {
  if (typeof value !== 'string' || value.length === 0) fail(field, 'is required and must be a non-empty string');
  optionalString(value, field, fail);
}

function optionalString(value: unknown, field: string, fail: Fail): void {
  if (value === undefined) return;
  if (typeof value !== 'string') fail(field, 'must be a string');
  if ((value as string).length > MAX_ID_LENGTH) fail(field, `must be at most ${MAX_ID_LENGTH} characters`);
  checkString(value as string, field, fail);
}

function checkString(value: string, field: string, fail: Fail): void {
  // Postgres text and jsonb cannot hold NUL; catching it here keeps the caller's transaction usable.
  if (value.includes('\u0000')) fail(field, 'must not contain the NUL character (\\u0000)');
}

/** Reject what JSON.stringify would silently drop or mangle, and what jsonb cannot store. */
function checkJson(value: unknown, path: string, fail: Fail, seen = new Set<object>()): void {
  switch (typeof value) {
    case 'string':
      checkString(value, path, fail);
      return;
    case 'number':
      if (!Number.isFinite(value)) fail(path, `${value} is not representable in JSON`);
      return;
    case 'boolean':
      return;
    case 'bigint':
      fail(path, 'BigInt is not JSON-serialisable; convert it to a string');
      return;
    case 'function':
    case 'symbol':
      fail(path, `a ${typeof value} is not JSON-serialisable`);
      return;
    case 'undefined':
      fail(path, 'undefined is not JSON-serialisable');
      return;
  }
  if (value === null) return;
  const obj = value as object;
  if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
    checkJson((obj as { toJSON(): unknown }).toJSON(), path, fail, seen);
    return;
  }
  if (seen.has(obj)) fail(path, 'contains a circular reference');
  seen.add(obj);
  if (Array.isArray(obj)) {
    obj.forEach((v, i) => {
      checkJson(v === undefined ? null : v, `${path}[${i}]`, fail, seen);
    });
  } else {
    for (const [k, v] of Object.entries(obj)) {
      if (v !== undefined) checkJson(v, `${path}.${k}`, fail, seen);
      checkString(k, `${path}.${k}`, fail);
    }
  }
  seen.delete(obj);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
