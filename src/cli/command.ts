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
  const all = { ...commonOptions, ...options };
  try {
    const args = negativeValuesJoined(argv, all);
    const parsed = parseArgs({ args, options: all, allowPositionals, strict: true });
    return { values: parsed.values as ParsedFlags['values'], positionals: parsed.positionals };
  } catch (err) {
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
