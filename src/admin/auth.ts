import { createHash, timingSafeEqual } from 'node:crypto';
import { bearerTokenProblem } from '../config/admin-token.js';
import { AdminUnauthorizedError, ConfigError } from '../errors.js';

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/**
 * Checks `Authorization: Bearer <token>` in constant time. Both sides are hashed first, so the comparison always
 * runs over 32 equal-length bytes and its timing says nothing about the token's length or its first wrong byte.
 *
 * A token that could never authenticate (empty, a space, a non-ASCII letter: see `bearerTokenProblem`) throws
 * `ConfigError` naming `admin.token` here, when the admin API starts, instead of refusing every request later.
 *
 * @example const check = bearerCheck(config.admin.token); check(request.headers.authorization); // throws 401 error
 */
export function bearerCheck(token: string | undefined): (header: string | string[] | undefined) => void {
  if (token === undefined) return () => {};
  const problem = bearerTokenProblem(token);
  if (problem) throw new ConfigError('admin.token', `${problem} (env ADMIN_TOKEN)`);
  const expected = digest(token);
  return (header) => {
    const match = typeof header === 'string' ? BEARER.exec(header) : null;
    // Compare even when the header is missing or malformed, so every refusal costs the same.
    const given = digest(match?.[1] ?? '');
    if (!timingSafeEqual(given, expected) || !match) throw new AdminUnauthorizedError();
  };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
