/** A lone (unpaired) UTF-16 surrogate: in `u` mode a well-formed pair is one code point and does not match. */
const LONE_SURROGATE = /\p{Cs}/u;

/** Why `text` is not valid Unicode text without NUL, or `undefined` when it is. */
export function textProblem(text: string): string | undefined {
  if (text.includes('\0')) return 'contains a NUL character';
  if (LONE_SURROGATE.test(text)) return 'contains a lone surrogate (half of a UTF-16 pair: not valid Unicode text)';
  return undefined;
}

export interface JsonValueRules {
  /** Also refuse strings and keys that are not valid Unicode text or contain NUL (see `textProblem`). */
  text: boolean;
}

/**
 * Where and why `value` would not be stored as given, or `undefined` when it would: a number JSON cannot carry
 * (`Infinity`, `NaN`, which is what `1e400` in a JSON body parses to; JSON.stringify would turn it into `null`), and
 * with `rules.text` a string or key with NUL or a lone surrogate. Iterative, so nesting depth cannot overflow the stack.
 *
 * @example jsonValueProblem({ n: [1e400] }, 'value', { text: true }) // 'value.n[0] is not a finite number ...'
 */
export function jsonValueProblem(value: unknown, root: string, rules: JsonValueRules): string | undefined {
  const stack: Array<[unknown, string]> = [[value, root]];
  while (stack.length > 0) {
    const [v, path] = stack.pop() as [unknown, string];
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return `${path} is not a finite number (JSON has no Infinity or NaN; 1e400 overflows)`;
    } else if (typeof v === 'string') {
      const problem = rules.text ? textProblem(v) : undefined;
      if (problem) return `${path} ${problem}`;
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`]);
    } else if (typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype) {
      for (const [k, child] of Object.entries(v)) {
        const childPath = /^[A-Za-z_$][\w$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`;
        const problem = rules.text ? textProblem(k) : undefined;
        if (problem) return `${childPath}: the key ${problem}`;
        stack.push([child, childPath]);
      }
    }
  }
  return undefined;
}
