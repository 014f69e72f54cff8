import { errorText } from '../db/pool.js';
import { ExactlyOnceError } from '../errors.js';
import { UsageError } from './command.js';
import { commands } from './commands/index.js';

const DEBUG_LEVELS = new Set(['debug', 'trace']);

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: exactly-once <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Every command takes --config FILE (else EXACTLY_ONCE_CONFIG) and --help.',
    'Environment: DATABASE_URL, REDIS_URL, EXACTLY_ONCE_CONFIG, LOG_LEVEL, ADMIN_TOKEN.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    console.error(`exactly-once: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  try {
    return await (await command.load()).run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`exactly-once ${name}: ${err.message}`);
      return 2;
    }
    if (err instanceof ExactlyOnceError) {
      console.error(`exactly-once ${name}: ${err.message} [${err.code}]`);
      return 1;
    }
    // One line for an operator; the stack only when asked for (LOG_LEVEL=debug), since it is ours, not theirs.
    console.error(`exactly-once ${name}: ${errorText(err)}`);
    if (DEBUG_LEVELS.has(process.env.LOG_LEVEL ?? '')) console.error((err as Error)?.stack ?? String(err));
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
