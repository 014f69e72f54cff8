import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { ConfigError } from '../errors.js';
import { escapeKeyPart, type KeyRef } from './keys.js';
import type { IdempotencyRecord } from './types.js';

/**
 * The record format the Lua scripts read and write (see lua/prelude.lua): an ASCII header the scripts can match
 * without decoding anything, then the result payload, JSON or raw-deflated JSON.
 */

/** Payloads smaller than this are stored as plain JSON even with compression on: deflate would not pay for itself. */
const COMPRESS_MIN_BYTES = 64;

export interface EncodedPayload {
  encoding: 'j' | 'z';
  payload: Buffer;
}

export function encodePayload(json: string, compression: boolean): EncodedPayload {
  const plain = Buffer.from(json, 'utf8');
  if (compression && plain.length >= COMPRESS_MIN_BYTES) {
    const packed = deflateRawSync(plain);
    if (packed.length < plain.length) return { encoding: 'z', payload: packed };
  }
  return { encoding: 'j', payload: plain };
}

/** Parse a stored record; `undefined` for a value that is not ours. */
export function decodeRecord(ref: KeyRef, raw: Buffer): IdempotencyRecord | undefined {
  const fields: string[] = [];
  let start = 0;
  for (let i = 0; i < raw.length && fields.length < 8; i++) {
    if (raw[i] === 0x7c /* | */) {
      fields.push(raw.toString('latin1', start, i));
      start = i + 1;
    }
  }
  const [magic, status, encoding, lease, expires, created, , fingerprint] = fields;
  if (fields.length < 8 || magic !== 'eo1' || (status !== 'p' && status !== 'c')) return undefined;
  const completed = status === 'c';
  let result: unknown = null;
  if (completed) {
    const body = raw.subarray(start);
    result = JSON.parse((encoding === 'z' ? inflateRawSync(body) : body).toString('utf8'));
  }
  return {
    ...ref,
    status: completed ? 'completed' : 'in_progress',
    result,
    fingerprint: fingerprint ? Buffer.from(fingerprint, 'hex').toString('utf8') : null,
    createdAt: new Date(Number(created)),
    expiresAt: new Date(Number(expires)),
    leaseExpiresAt: completed ? null : new Date(Number(lease)),
  };
}

/** Fingerprints travel hex-encoded so the header stays parseable whatever the caller's fingerprint contains. */
export function fingerprintHex(fingerprint: string | null): string {
  return fingerprint === null ? '' : Buffer.from(fingerprint, 'utf8').toString('hex');
}

/** Expiry (ms, the server's clock) of a stored record, read from the header alone; `undefined` if not ours. */
export function expiresAtOf(raw: Buffer): number | undefined {
  const m = /^eo1\|[pc]\|[jz]\|\d+\|(\d+)\|/.exec(raw.toString('latin1', 0, 64));
  return m ? Number(m[1]) : undefined;
}

/**
 * Characters escaped inside key parts: `:` (the separator), `%` (the escape), `{` `}` (Redis Cluster hash tags),
 * glob specials (so SCAN patterns built from a part match only that part), `|`, whitespace and control characters.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what must be escaped
const REDIS_UNSAFE = /[%:{}*?[\]\\|\s\x00-\x1f\x7f]/g;

export function redisPart(part: string): string {
  return escapeKeyPart(part, REDIS_UNSAFE);
}

/** Glob-escape a literal piece of a key for SCAN MATCH. */
export function globLiteral(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

export type PatternPart = 'queue' | 'tenant' | 'key';

/** A key pattern that leaves out a part would let records of different queues, tenants or keys share a key. */
export function requirePatternParts(pattern: string, parts: readonly PatternPart[], path: string): void {
  for (const part of parts) {
    if (!pattern.includes(`{${part}}`)) {
      throw new ConfigError(path, `must contain {${part}}, or records of different ${part}s would collide`);
    }
  }
}
