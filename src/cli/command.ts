import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ExactlyOnceError } from '../errors.js';

/** One CLI command: `exactly-once <name> ...`. `run` returns the process exit code. */
export interface Command {
  name: string;
  run(argv: string[]): Promise<number>;
}

/** Thrown for bad flags; main prints the message and the command's usage, exit code 2. */
export class UsageError extends ExactlyOnceError {
  constructor(message: string) {
    super('EO_CLI_USAGE', message);
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

/** parseArgs that turns node's ERR_PARSE_ARGS_* into a UsageError. */
export function parseFlags(
  argv: string[],
  options: NonNullable<ParseArgsConfig['options']>,
  allowPositionals = false,
): ParsedFlags {
  try {
    const parsed = parseArgs({ args: argv, options: { ...commonOptions, ...options }, allowPositionals, strict: true });
    return { values: parsed.values as ParsedFlags['values'], positionals: parsed.positionals };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
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
