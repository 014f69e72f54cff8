import { errorText } from '../db/pool.js';
import { ExactlyOnceError } from '../errors.js';
import { type Command, UsageError } from './command.js';
import { commands } from './commands/index.js';
import { packageVersion } from './version.js';

const DEBUG_LEVELS = new Set(['debug', 'trace']);

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: exactly-once <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Every command takes --config FILE (else EXACTLY_ONCE_CONFIG) and --help; --version prints the version.',
    'Environment: DATABASE_URL, REDIS_URL, EXACTLY_ONCE_CONFIG, LOG_LEVEL, ADMIN_TOKEN.',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name) {
    // Not asked for: the usage explains the mistake, on stderr like every other one.
    console.error(usage());
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return 0;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    console.log(packageVersion());
    return 0;
  }
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    console.error(`exactly-once: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  let command: Command | undefined;
  try {
    command = await entry.load();
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      const help = err.showUsage && command?.usage ? `\n\n${command.usage}` : '';
      console.error(`exactly-once ${name}: ${err.message}${help}`);
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
