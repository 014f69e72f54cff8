import { IdempotencyKeyInvalidError } from '../errors.js';
import { textProblem } from './json-value.js';

/**
 * What a job is deduplicated on. Two keys are the same key when queue, tenant and id are all equal, so the same id
 * under two tenants is two keys; tenant `''` is the tenant-less key.
 */
export interface IdempotencyKey {
  /** Deterministic identifier (see `generateIdempotencyKey`), or any stable id such as a relayed event's id. */
  readonly id: string;
  readonly queueName: string;
  /** `''` when the queue has no tenants. */
  readonly tenantId: string;
  /** When this key object was made. Informational only: it is not part of the identity. */
  readonly createdAt: Date;
  /** How long the completed result is kept, in milliseconds. */
  readonly ttl: number;
}

/** The identity of a stored record: what the stores index on. */
export interface KeyRef {
  readonly queueName: string;
  readonly tenantId: string;
  readonly keyId: string;
}

/** The reference document's (docs/reference-api.md) default TTL (24h); `IdempotencyService.generateIdempotencyKey` uses the configured one. */
export const DEFAULT_KEY_TTL_MS = 24 * 60 * 60 * 1000;

/** Longest key id / queue / tenant accepted (a Postgres btree entry must stay well under a page). */
export const MAX_KEY_PART_LENGTH = 512;

/**
 * Build a deterministic key: the same inputs always give the same id (no clock, no randomness), so a redelivered job
 * finds its first run. The id is `queue:tenant:suffix...` with `%` and `:` percent-escaped inside each part, which
 * keeps it readable and unambiguous: `('a:b', 'c')` and `('a', 'b:c')` give `a%3Ab:c` and `a:b%3Ac`.
 *
 * @example
 * const key = generateIdempotencyKey('orders', 'acme', 'order-created', '123');
 * key.id // 'orders:acme:order-created:123'
 */
export function generateIdempotencyKey(queueName: string, tenantId: string, ...suffix: string[]): IdempotencyKey {
  return keyWithTtl(DEFAULT_KEY_TTL_MS, queueName, tenantId, suffix);
}

/** `generateIdempotencyKey` with an explicit TTL (ms); the service uses it with `default_ttl`. */
export function keyWithTtl(
  ttl: number,
  queueName: string,
  tenantId: string,
  suffix: readonly string[],
): IdempotencyKey {
  const id = [queueName, tenantId, ...suffix].map((part) => escapeKeyPart(part, /[%:]/g)).join(':');
  const key = { id, queueName, tenantId, createdAt: new Date(), ttl };
  validateKey(key);
  return key;
}

/**
 * Throw `IdempotencyKeyInvalidError` naming the field when a key cannot be stored faithfully.
 *
 * @example validateKey({ id: '', queueName: 'q', tenantId: '', createdAt: new Date(), ttl: 1000 }) // throws: id
 */
export function validateKey(key: IdempotencyKey): void {
  if (typeof key !== 'object' || key === null) throw new IdempotencyKeyInvalidError('key', 'must be an IdempotencyKey');
  checkPart('queueName', key.queueName, false);
  checkPart('tenantId', key.tenantId, true);
  checkPart('id', key.id, false);
  if (typeof key.ttl !== 'number' || !Number.isInteger(key.ttl) || key.ttl <= 0) {
    throw new IdempotencyKeyInvalidError('ttl', `must be a positive integer number of milliseconds, got ${key.ttl}`);
  }
}

/** Validate the parts of an admin-supplied record identity (same rules as a key). */
export function validateRef(ref: KeyRef): void {
  checkPart('queueName', ref.queueName, false);
  checkPart('tenantId', ref.tenantId, true);
  checkPart('keyId', ref.keyId, false);
}

export function refOf(key: IdempotencyKey): KeyRef {
  return { queueName: key.queueName, tenantId: key.tenantId, keyId: key.id };
}

/** Percent-escape the characters `pattern` matches (plus `%` itself, which the pattern must include). */
export function escapeKeyPart(part: string, pattern: RegExp): string {
  return part.replace(pattern, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}

function checkPart(field: string, value: unknown, allowEmpty: boolean): void {
  if (typeof value !== 'string') throw new IdempotencyKeyInvalidError(field, 'must be a string');
  if (!allowEmpty && value.length === 0) throw new IdempotencyKeyInvalidError(field, 'must not be empty');
  if (value.length > MAX_KEY_PART_LENGTH) {
    throw new IdempotencyKeyInvalidError(field, `must be at most ${MAX_KEY_PART_LENGTH} characters`);
  }
  // Postgres text cannot hold NUL, and a lone surrogate reaches it as U+FFFD, so two different ids would share one
  // record; refusing both everywhere keeps the stores interchangeable.
  const problem = textProblem(value);
  if (problem) throw new IdempotencyKeyInvalidError(field, `must be valid text without NUL: it ${problem}`);
}
