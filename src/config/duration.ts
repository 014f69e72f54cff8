const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;

/**
 * Parse a duration in the reference document's (docs/reference-api.md) Go-like form into milliseconds.
 * Accepts `500ms`, `5s`, `30m`, `24h`, `168h`, compounds like `1h30m`, and `0`.
 * Returns `undefined` for anything else, so the caller can name the offending key.
 *
 * @example parseDuration('1h30m') // 5_400_000
 */
export function parseDuration(input: string): number | undefined {
  const text = input.trim();
  if (text === '0') return 0;
  if (text.length === 0) return undefined;
  PART.lastIndex = 0;
  let total = 0;
  while (PART.lastIndex < text.length) {
    const start = PART.lastIndex;
    const m = PART.exec(text);
    if (!m || m.index !== start) return undefined;
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  return Math.round(total);
}

/** Format milliseconds the way the config accepts them (`90000` -> `1m30s`, `0` -> `0ms`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0ms';
  if (ms % 1000 !== 0) return `${ms}ms`;
  let rest = ms / 1000;
  let out = '';
  for (const [unit, size] of [
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
