import { createHash, timingSafeEqual } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { bearerTokenProblem } from '../config/admin-token.js';
import { AdminForeignOriginError, AdminHostNotAllowedError, AdminUnauthorizedError, ConfigError } from '../errors.js';

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

/**
 * Refuse a request whose `Host` is not a name of this server (DNS rebinding). A page of another site can point its own
 * name at this server's address (127.0.0.1, a LAN address): the browser then sends `Host` and `Origin` both naming
 * that site, so the same-origin check passes, and without a token (the loopback default) it could write, read and
 * replay. What such a page cannot do is send another `Host` than its own name. So a `Host` passes when it is
 * - an IP address (v4, or v6 in brackets): a browser that sends one reached this server by its address, a name no
 *   one else controls; the bound address is one, and so are the addresses a port mapping or a LAN puts in front;
 * - `localhost` or a `*.localhost` name (browsers resolve them to loopback themselves, RFC 6761);
 * - a name in `allowedHosts` (`admin.allowed_hosts`), `.example.com` with its subdomains, or anything with `*`.
 * The port is not compared: port mappings and proxies change it, and a rebinding page shares the server's port
 * anyway; the name is what the attacker chooses. A request without `Host` (HTTP/1.0 scripts) is not from a browser.
 *
 * @example const check = hostCheck(config.admin.allowedHosts); check(request.headers.host); // throws 403 error
 */
export function hostCheck(allowedHosts: readonly string[] = []): (host: string | undefined) => void {
  const names = allowedHosts.map((h) => h.toLowerCase().replace(/\.$/, ''));
  if (names.includes('*')) return () => {};
  const exact = new Set(names.filter((n) => !n.startsWith('.')));
  const domains = names.filter((n) => n.startsWith('.'));
  const allowed = (name: string) =>
    isIPv4(name) ||
    name === 'localhost' ||
    name.endsWith('.localhost') ||
    exact.has(name) ||
    domains.some((d) => name === d.slice(1) || name.endsWith(d));
  return (header) => {
    if (header === undefined || header === '') return;
    const name = hostName(header);
    if (name === true || (name !== undefined && allowed(name))) return;
    throw new AdminHostNotAllowedError(header);
  };
}

/** The name of a `Host` header, lower case, without port or trailing dot; `true` for an IPv6 literal. */
function hostName(header: string): string | true | undefined {
  const h = header.trim().toLowerCase();
  const v6 = /^\[([^\]]+)\](?::\d*)?$/.exec(h);
  if (v6) return isIPv6(v6[1] as string) ? true : undefined;
  const m = /^([^:[\]]+)(?::\d*)?$/.exec(h);
  return m ? (m[1] as string).replace(/\.$/, '') : undefined;
}
