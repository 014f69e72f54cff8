import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ExactlyOnceError } from '../errors.js';

/** One CLI command: `exactly-once <name> ...`. `run` returns the process exit code. */
export interface Command {
  name: string;
  /** The command's `--help` text; printed after a usage error that asks for it (`UsageError.showUsage`). */
  usage?: string;
  run(argv: string[]): Promise<number>;
}

/** Thrown for bad flags; main prints the message (and, with `showUsage`, the command's usage), exit code 2. */
export class UsageError extends ExactlyOnceError {
  /** The message alone does not say what would be right: print the command's usage after it. */
  readonly showUsage: boolean;

  constructor(message: string, options: { showUsage?: boolean } = {}) {
    super('EO_CLI_USAGE', message);
    this.showUsage = options.showUsage ?? false;
  }
}

/** `--config` is accepted by every command; `--help` too. */
export const commonOptions = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

export interface ParsedFlags {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/**
 * parseArgs that turns node's ERR_PARSE_ARGS_* into a UsageError. An unknown option names the closest known one
 * (`--concurency`: did you mean --concurrency?) and asks for the usage to be printed.
 */
export function parseFlags(
  argv: string[],
  options: NonNullable<ParseArgsConfig['options']>,
  allowPositionals = false,
): ParsedFlags {
  const all = { ...commonOptions, ...options };
  try {
    const args = negativeValuesJoined(argv, all);
    const parsed = parseArgs({ args, options: all, allowPositionals, strict: true });
    return { values: parsed.values as ParsedFlags['values'], positionals: parsed.positionals };
  } catch (err) {
    const unknown = /^Unknown option '([^']+)'/.exec((err as Error).message)?.[1];
    if ((err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown) {
      const guess = closest(unknown.replace(/^-+/, ''), Object.keys(all));
      throw new UsageError(`unknown option '${unknown}'${guess ? `; did you mean --${guess}?` : ''}`, {
        showUsage: true,
      });
    }
    throw new UsageError((err as Error).message);
  }
}

/**
 * `--orders -5` as `--orders=-5`: parseArgs refuses a value that starts with a dash as "ambiguous", so the command
 * never got to say what is wrong with it ("--orders must be 1..100000"). Only a number after a long flag that takes
 * a value is joined; `--flag -x` still reads `-x` as a flag.
 */
function negativeValuesJoined(argv: string[], options: NonNullable<ParseArgsConfig['options']>): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const name = /^--([^=]+)$/.exec(arg)?.[1];
    const next = argv[i + 1];
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else out.push(arg);
  }
  return out;
}

/** The known name nearest to `typed` by edit distance, if it is near enough to be a typo (a third of its length). */
function closest(typed: string, names: string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of names) {
    const distance = editDistance(typed, name);
    if (!best || distance < best.distance) best = { name, distance };
  }
  return best && best.distance <= Math.max(1, Math.floor(best.name.length / 3)) ? best.name : undefined;
}

/** Levenshtein distance: insertions, deletions and substitutions of one character each cost 1. */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitute = (row[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      next.push(Math.min(substitute, (row[j] as number) + 1, (next[j - 1] as number) + 1));
    }
    row = next;
  }
  return row[b.length] as number;
}

/** Digits only: `Number()` would take `''` as 0 (a random port), `1e3` as 1000 and `0x10` as 16. */
export function intFlag(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d{1,6}$/.test(value) ? Number(value) : Number.NaN;
  if (!(n >= min && n <= max)) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max} (got ${JSON.stringify(value)})`);
  }
  return n;
}
