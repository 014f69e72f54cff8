import { OutboxDuplicateIdError, OutboxEventValidationError } from '../errors.js';
import { UUID_RE, uuidv7 } from './ids.js';
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
/** `max_retries` is an `integer` column. */
const MAX_RETRIES = 2 ** 31 - 1;
/**
 * Deepest nesting of objects/arrays accepted in `payload` and `metadata`. Far beyond real events, far below where
 * a recursive walk (ours, JSON.stringify, a consumer's decoder) runs out of stack.
 */
export const MAX_JSON_DEPTH = 100;

/**
 * Check one event before anything is written (G6). Throws `OutboxEventValidationError` naming the field
 * (and the index, for a batch). Values are checked the way Postgres' jsonb and text columns will see them, so
 * nothing that passes here fails at the INSERT (which would abort the caller's transaction), and the returned
 * event equals the stored row.
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
  // Any case is accepted; the writer stores (and returns) the lower-case form Postgres prints.
  if (e.id !== undefined && (typeof e.id !== 'string' || !UUID_RE.test(e.id))) fail('id', 'must be a UUID');
  if (
    e.maxRetries !== undefined &&
    !(Number.isInteger(e.maxRetries) && (e.maxRetries as number) >= 0 && (e.maxRetries as number) <= MAX_RETRIES)
  ) {
    fail('maxRetries', `must be an integer from 0 to ${MAX_RETRIES}`);
  }
  if (e.payload === undefined) fail('payload', 'is required (use null for an empty payload)');
  checkJson(e.payload, 'payload', fail, 0);
  if (e.headers !== undefined) {
    if (!isPlainRecord(e.headers)) fail('headers', 'must be a plain object of string values');
    for (const [k, v] of Object.entries(e.headers as object)) {
      const path = childPath('headers', k);
      checkString(k, path, fail);
      if (typeof v !== 'string') fail(path, 'must be a string');
      checkString(v as string, path, fail);
    }
    const priority = (e.headers as Record<string, string>).priority;
    if (priority !== undefined && priority !== 'high' && priority !== 'low') {
      fail('headers.priority', `must be "high" or "low", got ${JSON.stringify(priority)}`);
    }
    // Picks a list or a stream for this event over `outbox.publisher` (src/publishers/destination-kind.ts).
    const destination = (e.headers as Record<string, string>).destination;
    if (destination !== undefined && destination !== 'list' && destination !== 'stream') {
      fail('headers.destination', `must be "list" or "stream", got ${JSON.stringify(destination)}`);
    }
  }
  if (e.metadata !== undefined) {
    if (!isPlainRecord(e.metadata)) fail('metadata', 'must be a plain object');
    checkJson(e.metadata, 'metadata', fail, 0);
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

// With the u flag a surrogate pair is one code point, so this matches only an unpaired (lone) surrogate.
const LONE_SURROGATE = /[\ud800-\udfff]/u;

function checkString(value: string, field: string, fail: Fail): void {
  // Postgres text and jsonb cannot hold NUL; catching it here keeps the caller's transaction usable.
  if (value.includes('\u0000')) fail(field, 'must not contain the NUL character (\\u0000)');
  // A lone surrogate (e.g. from slicing an emoji in half) is not Unicode: jsonb rejects it (22P02, aborting the
  // caller's transaction) and a text column silently stores U+FFFD, so the row would differ from what was written.
  if (LONE_SURROGATE.test(value)) fail(field, 'must not contain a lone UTF-16 surrogate (half of an emoji?)');
}

/** `payload.name`, `payload["x-id"]`, `payload[3]`: readable, and unambiguous for any key. */
function childPath(parent: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

/**
 * Objects JSON.stringify turns into something other than their content — `{}` for a Map, Set or RegExp, an object
 * of indexes for a typed array — so storing one would silently lose data.
 */
const LOSSY_TAGS = new Set([
  'Map',
  'Set',
  'WeakMap',
  'WeakSet',
  'WeakRef',
  'RegExp',
  'Error',
  'Promise',
  'ArrayBuffer',
  'SharedArrayBuffer',
  'DataView',
]);

/** Reject what JSON.stringify would silently drop or mangle, and what jsonb cannot store. */
function checkJson(
  value: unknown,
  path: string,
  fail: Fail,
  depth: number,
  seen = new Set<object>(),
  callToJson = true,
): void {
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
  const tag = Object.prototype.toString.call(obj).slice(8, -1);
  // An invalid Date's toJSON() is null: the timestamp would silently vanish.
  if (tag === 'Date' && Number.isNaN((obj as Date).getTime())) fail(path, 'is an invalid Date');
  if (callToJson && typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
    // Date (an ISO string), Buffer, decimal types...: stored as what toJSON() returns. Like JSON.stringify, call it
    // once per value, not again on its result.
    let json: unknown;
    try {
      json = (obj as { toJSON(key: string): unknown }).toJSON('');
    } catch (err) {
      fail(path, `toJSON() threw: ${err instanceof Error ? err.message : String(err)}`);
    }
    checkJson(json, path, fail, depth, seen, false);
    return;
  }
  if (tag === 'Number' || tag === 'String' || tag === 'Boolean' || tag === 'BigInt' || tag === 'Symbol') {
    checkJson(obj.valueOf(), path, fail, depth, seen); // a boxed primitive is stored as the primitive
    return;
  }
  if (LOSSY_TAGS.has(tag) || ArrayBuffer.isView(obj)) {
    const as = ArrayBuffer.isView(obj) && tag !== 'DataView' ? 'an object of indexes' : '{}';
    fail(
      path,
      `a ${tag} is not JSON-serialisable (it would be stored as ${as}); convert it to a plain object or array`,
    );
  }
  if (depth >= MAX_JSON_DEPTH) fail(path, `nests deeper than ${MAX_JSON_DEPTH} levels`);
  if (seen.has(obj)) fail(path, 'contains a circular reference');
  seen.add(obj);
  if (Array.isArray(obj)) {
    obj.forEach((v, i) => {
      checkJson(v === undefined ? null : v, `${path}[${i}]`, fail, depth + 1, seen);
    });
  } else {
    for (const [k, v] of Object.entries(obj)) {
      const child = childPath(path, k);
      checkString(k, child, fail);
      if (v !== undefined) checkJson(v, child, fail, depth + 1, seen);
    }
  }
  seen.delete(obj);
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Validate the events of one `storeInOutbox` call and give each its id: the caller's, lower-cased (Postgres prints
 * uuids in lower case, so the returned event equals the row), or a new UUIDv7. An id used twice in the call is
 * refused. `check` adds the storage's own rules (where an event may go); `index` is undefined for a single event.
 * Throws before anything is written.
 */
export function checkedIds(
  events: readonly NewOutboxEvent[],
  single: boolean,
  check: (event: NewOutboxEvent, index: number | undefined) => void,
): string[] {
  const ids: string[] = [];
  const seen = new Map<string, number>();
  events.forEach((e, i) => {
    const index = single ? undefined : i;
    validateEvent(e, index);
    check(e, index);
    const id = (e.id ?? uuidv7()).toLowerCase();
    const first = seen.get(id);
    if (first !== undefined) throw new OutboxDuplicateIdError(id, index, first);
    seen.set(id, i);
    ids.push(id);
  });
  return ids;
}
