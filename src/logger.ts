import { type Logger, pino } from 'pino';

export type { Logger };

/**
 * The one root logger: JSON to stdout, level from `LOG_LEVEL` (default `info`). Components take a child:
 * `rootLogger().child({ component: 'relay', relayId })`. Pretty output when stdout is a TTY outside production
 * and pino-pretty is installed.
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  const level = options.level ?? process.env.LOG_LEVEL ?? 'info';
  const pretty = process.stdout.isTTY && process.env.NODE_ENV !== 'production' && canResolve('pino-pretty');
  return pino({
    name: options.name ?? 'exactly-once',
    level,
    serializers: { err: pino.stdSerializers.err },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true } } } : {}),
  });
}

function canResolve(name: string): boolean {
  try {
    import.meta.resolve(name);
    return true;
  } catch {
    return false;
  }
}

/** A logger that drops everything (library default when the caller passes none). */
export const silentLogger: Logger = pino({ level: 'silent' });
