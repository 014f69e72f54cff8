import { createHash, timingSafeEqual } from 'node:crypto';
import { bearerTokenProblem } from '../config/admin-token.js';
import { AdminForeignOriginError, AdminUnauthorizedError, ConfigError } from '../errors.js';

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

/** The request headers the same-origin check reads. */
export interface OriginHeaders {
  origin?: string | string[] | undefined;
  host?: string | undefined;
  'sec-fetch-site'?: string | string[] | undefined;
}

/**
 * Refuse a write that a page of another origin sent (CSRF; the dashboard itself sends its writes same-origin). A
 * browser names the sending page in `Origin` on every cross-origin request and on every same-origin POST/DELETE; it
 * must be this server's own `scheme://host[:port]`, as the `Host` header names it. `Origin: null` (sandboxed frames,
 * some redirects) is foreign. Without `Origin`, `Sec-Fetch-Site: cross-site|same-site` still refuses. A request with
 * neither header (curl, scripts) is not from a browser page and passes on to the token check.
 *
 * @example sameOriginCheck(request.headers, request.protocol); // throws AdminForeignOriginError
 */
export function sameOriginCheck(headers: OriginHeaders, protocol: string): void {
  const origin = headers.origin;
  if (origin !== undefined) {
    const given = Array.isArray(origin) ? origin.join(', ') : origin;
    const own = headers.host ? `${protocol}://${headers.host}`.toLowerCase() : undefined;
    if (own === undefined || given.toLowerCase() !== own) throw new AdminForeignOriginError(given);
    return;
  }
  const site = headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site')
    throw new AdminForeignOriginError(`(none; Sec-Fetch-Site: ${site})`);
}
