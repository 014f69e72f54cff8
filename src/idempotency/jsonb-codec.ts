/**
 * How the Postgres store keeps a result in its `jsonb` column so that every JSON text `JSON.stringify` can produce
 * round-trips (G4: a processor that ran must complete its key; a result that cannot be stored would leave the key in
 * progress and let the next delivery run the processor again).
 *
 * `jsonb` refuses two things JSON allows: the escape `\u0000` (Postgres text cannot hold NUL) and a lone surrogate
 * escape such as `\ud800` (what `JSON.stringify` writes for half an emoji, e.g. `'😀'.slice(0, 1)`). Such a result
 * is stored as its JSON *text* inside a one-key wrapper, `{"$exactly_once_json": "<json text>"}`: as a jsonb string
 * the escapes are plain characters (`\` is itself escaped), which jsonb accepts. A result that merely looks like the
 * wrapper is wrapped too, so decoding is unambiguous. Everything else is stored as itself, readable with SQL.
 */

export const WRAPPER_KEY = '$exactly_once_json';
const WRAPPER_PREFIX = `{"${WRAPPER_KEY}":`;

/** A `\u` escape of NUL or of a surrogate, preceded by an even number of backslashes (so it is an escape, not text). */
const UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/i;

/**
 * The text to bind to a `$n::jsonb` parameter for `json` (a `JSON.stringify` output). `JSON.stringify` writes a
 * surrogate as an escape only when it is unpaired (a pair is written as the character itself), so any surrogate
 * escape here is one jsonb would refuse.
 */
export function toJsonbText(json: string): string {
  const unstorable = json.includes('\\u') && UNSTORABLE_ESCAPE.test(json);
  return unstorable || json.startsWith(WRAPPER_PREFIX) ? `${WRAPPER_PREFIX}${JSON.stringify(json)}}` : json;
}

/** The result as stored by `toJsonbText`, given the column's value as pg parsed it. */
export function fromJsonbValue(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value ?? null;
  const keys = Object.keys(value);
  const text = (value as Record<string, unknown>)[WRAPPER_KEY];
  return keys.length === 1 && typeof text === 'string' ? JSON.parse(text) : value;
}
