/**
 * RFC 6750 `b64token`, the syntax of a Bearer credential: letters, digits, `-._~+/`, then optional `=` padding.
 * A token outside it (a space, a quote, a non-ASCII letter) either cannot be sent in an `Authorization` header at
 * all or is split or rewritten by clients and proxies, so it could never authenticate.
 */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Why `token` can never authenticate as `Authorization: Bearer <token>`, or `undefined` when it can. The reason
 * never quotes the token: it is a secret and ends up in logs.
 *
 * @example bearerTokenProblem('two words') // 'must be usable as a Bearer token: ...'
 */
export function bearerTokenProblem(token: string): string | undefined {
  if (token.length === 0) {
    return 'is set but empty; unset it to run without a token, or set a token (e.g. `openssl rand -hex 32`)';
  }
  if (!B64TOKEN.test(token)) {
    return (
      'must be usable as a Bearer token: only letters, digits and - . _ ~ + / (then optional = padding); ' +
      'no spaces, quotes or non-ASCII characters (e.g. `openssl rand -hex 32`)'
    );
  }
  return undefined;
}
